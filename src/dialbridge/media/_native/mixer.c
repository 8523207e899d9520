/* The mixer of one receiving RTP session, in C: mixer.Mixer (N loudest SSRCs ranked by their
 * RFC 6464 level before decoding, 0.5 s hangover, soft clip) and mixer.SingleStreamPlayout
 * (one stream; a new SSRC replaces the old). Same rules as the Python classes. */
#include "dataplane.h"

#include <stdlib.h>
#include <string.h>

#define MAX_STREAMS_HELD 64
#define HOUSEKEEPING_TICKS 50
#define HANGOVER_TICKS 25
#define UNKNOWN_LEVEL 0 /* no RFC 6464 level: rank as loud, so the stream is heard */

typedef struct {
    uint32_t ssrc;
    dp_jb *jb;
    int last_level; /* level of the last AUDIO frame played (DP_SILENCE_LEVEL: none) */
    long loud_at;   /* tick at which the stream was last above quiet_level */
    int picked;     /* picked on the previous tick */
} stream;

struct dp_mixer {
    int codec, single, clock_rate, frame_samples, max_streams, quiet_level;
    double stream_timeout, min_delay, max_delay;
    long ticks;
    int count;
    stream streams[MAX_STREAMS_HELD];
    uint64_t decoded_frames, skipped_frames, refused_streams;
};

static dp_jb *new_jb(dp_mixer *m)
{
    dp_decoder *dec = dp_decoder_new(m->codec);
    if (dec == NULL)
        return NULL;
    dp_jb *jb = dp_jb_new(dec, m->clock_rate, m->frame_samples, DP_PCM, m->min_delay,
                          m->max_delay, 5);
    if (jb == NULL)
        dec->destroy(dec);
    return jb;
}

dp_mixer *dp_mixer_new(int codec, int single, int clock_rate, int frame_samples,
                       int max_streams, int quiet_level, double stream_timeout,
                       double min_delay, double max_delay)
{
    dp_mixer *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->codec = codec;
    m->single = single;
    m->clock_rate = clock_rate;
    m->frame_samples = frame_samples;
    m->max_streams = max_streams < 1 ? 1 : max_streams;
    m->quiet_level = quiet_level;
    m->stream_timeout = stream_timeout;
    m->min_delay = min_delay;
    m->max_delay = max_delay;
    if (single) { /* SingleStreamPlayout: its one buffer exists from the start */
        m->streams[0].jb = new_jb(m);
        if (m->streams[0].jb == NULL) {
            free(m);
            return NULL;
        }
        m->count = 1;
    }
    return m;
}

void dp_mixer_free(dp_mixer *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < m->count; i++)
        dp_jb_free(m->streams[i].jb);
    free(m);
}

static void remove_at(dp_mixer *m, int i)
{
    dp_jb_free(m->streams[i].jb);
    memmove(&m->streams[i], &m->streams[i + 1], (size_t)(m->count - i - 1) * sizeof(stream));
    m->count--;
}

void dp_mixer_remove(dp_mixer *m, uint32_t ssrc)
{
    if (m->single) {
        uint32_t cur;
        if (dp_jb_ssrc(m->streams[0].jb, &cur) && cur == ssrc)
            dp_jb_reset(m->streams[0].jb, 1);
        return;
    }
    for (int i = 0; i < m->count; i++)
        if (m->streams[i].ssrc == ssrc) {
            remove_at(m, i);
            return;
        }
}

int dp_mixer_push(dp_mixer *m, uint32_t ssrc, uint16_t seq, uint32_t ts, const uint8_t *payload,
                  int len, double now, int level)
{
    if (level < 0)
        level = UNKNOWN_LEVEL;
    if (m->single)
        return dp_jb_push(m->streams[0].jb, ssrc, seq, ts, payload, len, now, level);
    stream *s = NULL;
    for (int i = 0; i < m->count; i++)
        if (m->streams[i].ssrc == ssrc) {
            s = &m->streams[i];
            break;
        }
    if (s == NULL) {
        if (len <= 0) /* a hole punch must not create a stream */
            return 0;
        if (m->count == MAX_STREAMS_HELD) {
            m->refused_streams++;
            return 0;
        }
        dp_jb *jb = new_jb(m);
        if (jb == NULL)
            return 0;
        s = &m->streams[m->count++];
        s->ssrc = ssrc;
        s->jb = jb;
        s->last_level = DP_SILENCE_LEVEL;
        s->loud_at = -HANGOVER_TICKS;
        s->picked = 0;
    }
    return dp_jb_push(s->jb, ssrc, seq, ts, payload, len, now, level);
}

static void expire(dp_mixer *m, double now)
{
    for (int i = m->count - 1; i >= 0; i--) {
        double last = dp_jb_last_arrival(m->streams[i].jb);
        if (last >= 0 && now - last > m->stream_timeout)
            remove_at(m, i);
    }
}

typedef struct {
    int level;
    uint32_t ssrc;
    int index;
} rank;

static int rank_cmp(const void *a, const void *b)
{
    const rank *x = a, *y = b;
    if (x->level != y->level)
        return x->level < y->level ? -1 : 1;
    return x->ssrc < y->ssrc ? -1 : (x->ssrc > y->ssrc);
}

int dp_mixer_mix(dp_mixer *m, double now, int16_t *out, uint32_t *sources)
{
    int level;
    if (m->single) {
        dp_jb *jb = m->streams[0].jb;
        int kind = dp_jb_pop(jb, now, 1, out, &level);
        if (kind == DP_SILENCE) {
            memset(out, 0, DP_PCM * sizeof(int16_t));
            return 0;
        }
        m->decoded_frames++;
        if (sources != NULL) {
            uint32_t ssrc = 0;
            dp_jb_ssrc(jb, &ssrc);
            sources[0] = ssrc;
        }
        return 1;
    }
    long tick = ++m->ticks;
    if (tick % HOUSEKEEPING_TICKS == 0)
        expire(m, now);
    if (m->count == 0) {
        memset(out, 0, DP_PCM * sizeof(int16_t));
        return 0;
    }
    rank ranked[MAX_STREAMS_HELD];
    int nranked = 0;
    for (int i = 0; i < m->count; i++) {
        stream *s = &m->streams[i];
        level = dp_jb_peek_level(s->jb, now); /* starts playout when it is time */
        if (!dp_jb_playing(s->jb))
            continue; /* nothing to play yet: never ranked */
        if (level == DP_SILENCE_LEVEL) {
            if (!s->picked)
                continue;
            level = s->last_level; /* conceal a loss on a stream that was picked */
        }
        if (level <= m->quiet_level) {
            s->loud_at = tick;
            ranked[nranked++] = (rank){level, s->ssrc, i};
        } else if (level < DP_SILENCE_LEVEL && tick - s->loud_at < HANGOVER_TICKS) {
            ranked[nranked++] = (rank){level, s->ssrc, i}; /* a pause inside speech */
        }
    }
    if (nranked > m->max_streams) {
        qsort(ranked, (size_t)nranked, sizeof(rank), rank_cmp);
        nranked = m->max_streams;
    }
    for (int i = 0; i < m->count; i++)
        m->streams[i].picked = 0;
    for (int r = 0; r < nranked; r++)
        m->streams[ranked[r].index].picked = 1;

    static int16_t frames[MAX_STREAMS_HELD][DP_PCM];
    const int16_t *mixed[MAX_STREAMS_HELD];
    int nframes = 0;
    for (int i = 0; i < m->count; i++) {
        stream *s = &m->streams[i];
        if (s->picked) {
            int kind = dp_jb_pop(s->jb, now, 1, frames[nframes], &level);
            if (kind == DP_SILENCE)
                s->picked = 0; /* went silent: no rank kept for it next tick */
            else {
                if (sources != NULL && nframes < 16)
                    sources[nframes] = s->ssrc;
                mixed[nframes] = frames[nframes];
                nframes++;
                if (kind == DP_AUDIO)
                    s->last_level = level;
            }
        } else {
            dp_jb_pop(s->jb, now, 0, NULL, &level);
        }
    }
    m->decoded_frames += (uint64_t)nframes;
    m->skipped_frames += (uint64_t)(m->count - nranked);
    if (nframes == 0) {
        memset(out, 0, DP_PCM * sizeof(int16_t));
        return 0;
    }
    dp_mix(mixed, nframes, DP_PCM, out);
    return nframes;
}

/* ---- Python type: _dataplane.Playout (the Mixer / SingleStreamPlayout interface) -------- */

static PyObject *mixed_frame_cls, *jitter_stats_cls, *np_empty, *np_int16;

static int import_python_side(void)
{
    if (mixed_frame_cls != NULL)
        return 0;
    PyObject *mixer = PyImport_ImportModule("dialbridge.media.mixer");
    PyObject *jitter = mixer ? PyImport_ImportModule("dialbridge.media.jitter") : NULL;
    PyObject *numpy = jitter ? PyImport_ImportModule("numpy") : NULL;
    if (numpy != NULL) {
        mixed_frame_cls = PyObject_GetAttrString(mixer, "MixedFrame");
        jitter_stats_cls = PyObject_GetAttrString(jitter, "JitterStats");
        np_empty = PyObject_GetAttrString(numpy, "empty");
        np_int16 = PyObject_GetAttrString(numpy, "int16");
    }
    Py_XDECREF(mixer);
    Py_XDECREF(jitter);
    Py_XDECREF(numpy);
    if (!mixed_frame_cls || !jitter_stats_cls || !np_empty || !np_int16) {
        Py_CLEAR(mixed_frame_cls);
        return -1;
    }
    return 0;
}

/* A new int16 ndarray holding n samples of pcm. */
PyObject *dp_pcm_array(const int16_t *pcm, int n)
{
    if (import_python_side() < 0)
        return NULL;
    PyObject *arr = PyObject_CallFunction(np_empty, "iO", n, np_int16);
    if (arr == NULL)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arr, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    memcpy(view.buf, pcm, (size_t)n * sizeof(int16_t));
    PyBuffer_Release(&view);
    return arr;
}

static int playout_init(DpPlayoutObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"codec",      "single",       "clock_rate",     "frame_samples",
                            "pcm_samples", "max_streams", "quiet_level",    "stream_timeout",
                            "min_delay",  "max_delay",    NULL};
    const char *codec;
    int single = 0, clock_rate = 8000, frame_samples = 160, pcm_samples = DP_PCM;
    int max_streams = 3, quiet_level = 70;
    double stream_timeout = 5.0, min_delay = 0.060, max_delay = 0.300;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$piiiiiddd", names, &codec, &single,
                                     &clock_rate, &frame_samples, &pcm_samples, &max_streams,
                                     &quiet_level, &stream_timeout, &min_delay, &max_delay))
        return -1;
    int id = dp_codec_id(codec);
    if (id < 0 || !dp_codec_ready(id)) {
        PyErr_Format(PyExc_ValueError, "no native playout for codec %s", codec);
        return -1;
    }
    if (pcm_samples != DP_PCM || frame_samples <= 0 || clock_rate <= 0) {
        PyErr_SetString(PyExc_ValueError, "the native playout runs 160-sample (8 kHz) frames");
        return -1;
    }
    if (import_python_side() < 0)
        return -1;
    dp_mixer_free(self->mixer);
    self->mixer = dp_mixer_new(id, single, clock_rate, frame_samples, max_streams, quiet_level,
                               stream_timeout, min_delay, max_delay);
    self->codec = id;
    if (self->mixer == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void playout_dealloc(DpPlayoutObject *self)
{
    dp_mixer_free(self->mixer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *playout_push_payload(DpPlayoutObject *self, PyObject *const *args,
                                      Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "push_payload(ssrc, seq, ts, payload, now, level)");
        return NULL;
    }
    unsigned long ssrc = PyLong_AsUnsignedLongMask(args[0]);
    unsigned long seq = PyLong_AsUnsignedLongMask(args[1]);
    unsigned long ts = PyLong_AsUnsignedLongMask(args[2]);
    double now = PyFloat_AsDouble(args[4]);
    long level = args[5] == Py_None ? -1 : PyLong_AsLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[3], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int r = 0;
    if (view.len <= DP_MAX_PAYLOAD)
        r = dp_mixer_push(self->mixer, (uint32_t)ssrc, (uint16_t)seq, (uint32_t)ts, view.buf,
                          (int)view.len, now, (int)level);
    PyBuffer_Release(&view);
    return PyBool_FromLong(r);
}

static PyObject *playout_push(DpPlayoutObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"packet", "now", "level", NULL};
    PyObject *packet, *level = Py_None;
    double now;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Od|O", names, &packet, &now, &level))
        return NULL;
    PyObject *a[6] = {NULL};
    a[0] = PyObject_GetAttrString(packet, "ssrc");
    a[1] = PyObject_GetAttrString(packet, "sequence_number");
    a[2] = PyObject_GetAttrString(packet, "timestamp");
    a[3] = PyObject_GetAttrString(packet, "payload");
    a[4] = PyFloat_FromDouble(now);
    a[5] = level;
    PyObject *r = NULL;
    if (a[0] && a[1] && a[2] && a[3] && a[4])
        r = playout_push_payload(self, a, 6);
    for (int i = 0; i < 5; i++)
        Py_XDECREF(a[i]);
    return r;
}

PyObject *dp_playout_mix_object(DpPlayoutObject *self, double now)
{
    int16_t out[DP_PCM];
    uint32_t sources[16];
    int n = dp_mixer_mix(self->mixer, now, out, sources);
    PyObject *pcm = dp_pcm_array(out, DP_PCM);
    if (pcm == NULL)
        return NULL;
    int shown = n < 16 ? n : 16;
    PyObject *src = PyTuple_New(shown);
    if (src == NULL) {
        Py_DECREF(pcm);
        return NULL;
    }
    for (int i = 0; i < shown; i++)
        PyTuple_SET_ITEM(src, i, PyLong_FromUnsignedLong(sources[i]));
    PyObject *frame = PyObject_CallFunction(mixed_frame_cls, "NNO", pcm, src,
                                            n > 0 ? Py_True : Py_False);
    return frame;
}

static PyObject *playout_mix(DpPlayoutObject *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    return dp_playout_mix_object(self, now);
}

static PyObject *playout_remove(DpPlayoutObject *self, PyObject *arg)
{
    unsigned long ssrc = PyLong_AsUnsignedLongMask(arg);
    if (PyErr_Occurred())
        return NULL;
    dp_mixer_remove(self->mixer, (uint32_t)ssrc);
    Py_RETURN_NONE;
}

static PyObject *stats_object(const dp_jb *jb)
{
    const dp_jb_stats *s = dp_jb_get_stats(jb);
    return PyObject_CallFunction(
        jitter_stats_cls, "KKKKKKKKKKKd", (unsigned long long)s->received,
        (unsigned long long)s->played, (unsigned long long)s->concealed,
        (unsigned long long)s->silent, (unsigned long long)s->late,
        (unsigned long long)s->duplicates, (unsigned long long)s->empty,
        (unsigned long long)s->dropped_for_depth, (unsigned long long)s->inserted_for_depth,
        (unsigned long long)s->resyncs, (unsigned long long)s->reanchors, s->jitter);
}

/* {ssrc: types.SimpleNamespace(stats=JitterStats, last_arrival, ssrc)}: a snapshot for RTCP
 * reports and diagnostics (Mixer.streams maps SSRCs to live jitter buffers). */
static PyObject *playout_streams(DpPlayoutObject *self, void *closure)
{
    (void)closure;
    static PyObject *ns_cls;
    if (ns_cls == NULL) {
        PyObject *types = PyImport_ImportModule("types");
        if (types == NULL)
            return NULL;
        ns_cls = PyObject_GetAttrString(types, "SimpleNamespace");
        Py_DECREF(types);
        if (ns_cls == NULL)
            return NULL;
    }
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    dp_mixer *m = self->mixer;
    for (int i = 0; i < m->count; i++) {
        uint32_t ssrc;
        if (!dp_jb_ssrc(m->streams[i].jb, &ssrc))
            continue;
        PyObject *stats = stats_object(m->streams[i].jb);
        double last = dp_jb_last_arrival(m->streams[i].jb);
        PyObject *kw = stats ? Py_BuildValue("{s:N,s:O,s:k}", "stats", stats, "last_arrival",
                                             last < 0 ? Py_None : PyFloat_FromDouble(last),
                                             "ssrc", (unsigned long)ssrc)
                             : NULL;
        PyObject *empty = PyTuple_New(0);
        PyObject *view = kw && empty ? PyObject_Call(ns_cls, empty, kw) : NULL;
        Py_XDECREF(empty);
        Py_XDECREF(kw);
        PyObject *key = PyLong_FromUnsignedLong(ssrc);
        if (view == NULL || key == NULL || PyDict_SetItem(out, key, view) < 0) {
            Py_XDECREF(view);
            Py_XDECREF(key);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(view);
        Py_DECREF(key);
    }
    return out;
}

static PyObject *playout_counter(DpPlayoutObject *self, void *which)
{
    dp_mixer *m = self->mixer;
    switch ((intptr_t)which) {
    case 0:
        return PyLong_FromUnsignedLongLong(m->decoded_frames);
    case 1:
        return PyLong_FromUnsignedLongLong(m->skipped_frames);
    case 2:
        return PyLong_FromLong(m->max_streams);
    case 3:
        return PyLong_FromLong(m->quiet_level);
    default:
        return PyLong_FromUnsignedLongLong(m->refused_streams);
    }
}

static PyMethodDef playout_methods[] = {
    {"push_payload", (PyCFunction)(void (*)(void))playout_push_payload, METH_FASTCALL,
     "push_payload(ssrc, seq, ts, payload, now, level) -> bool (level None: not sent)"},
    {"push", (PyCFunction)(void (*)(void))playout_push, METH_VARARGS | METH_KEYWORDS,
     "push(packet, now, level=None) -> bool"},
    {"mix", (PyCFunction)playout_mix, METH_O, "mix(now) -> mixer.MixedFrame"},
    {"remove", (PyCFunction)playout_remove, METH_O, "Forget a stream (RTCP BYE)."},
    {NULL},
};

static PyGetSetDef playout_getset[] = {
    {"streams", (getter)playout_streams, NULL, "snapshot {ssrc: stats view}", NULL},
    {"decoded_frames", (getter)playout_counter, NULL, NULL, (void *)0},
    {"skipped_frames", (getter)playout_counter, NULL, NULL, (void *)1},
    {"max_streams", (getter)playout_counter, NULL, NULL, (void *)2},
    {"quiet_level", (getter)playout_counter, NULL, NULL, (void *)3},
    {"refused_streams", (getter)playout_counter, NULL, NULL, (void *)4},
    {NULL},
};

PyTypeObject DpPlayoutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dialbridge.media._dataplane.Playout",
    .tp_basicsize = sizeof(DpPlayoutObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "mixer.Mixer / mixer.SingleStreamPlayout in C (jitter buffers, N loudest, mix).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)playout_init,
    .tp_dealloc = (destructor)playout_dealloc,
    .tp_methods = playout_methods,
    .tp_getset = playout_getset,
};

int dp_mixer_add_type(PyObject *module)
{
    if (PyType_Ready(&DpPlayoutType) < 0)
        return -1;
    Py_INCREF(&DpPlayoutType);
    if (PyModule_AddObject(module, "Playout", (PyObject *)&DpPlayoutType) < 0) {
        Py_DECREF(&DpPlayoutType);
        return -1;
    }
    return 0;
}
