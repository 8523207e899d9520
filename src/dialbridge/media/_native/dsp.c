/* Codecs and DSP for the data plane: G.711, Opus through libopus, the RFC 6464 level meter
 * and the clipping-protected mix. Each one follows its Python counterpart (codecs/g711.py,
 * codecs/opus.py, levels.py, mixer.mix_pcm) so that both paths sound the same. */
#include "dataplane.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- G.711: the tables are codecs/g711.py's own, handed over once (bit-exact by
 * construction, and one definition of the tables in the project). ---------------------- */

static uint8_t ulaw_enc[65536], alaw_enc[65536];
static int16_t ulaw_dec[256], alaw_dec[256];
static int g711_ready;

PyObject *dp_set_g711_tables(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer ue, ud, ae, ad;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &ue, &ud, &ae, &ad))
        return NULL;
    int ok = ue.len == 65536 && ae.len == 65536 && ud.len == 512 && ad.len == 512;
    if (ok) {
        memcpy(ulaw_enc, ue.buf, 65536);
        memcpy(alaw_enc, ae.buf, 65536);
        memcpy(ulaw_dec, ud.buf, 512);
        memcpy(alaw_dec, ad.buf, 512);
        g711_ready = 1;
    }
    PyBuffer_Release(&ue);
    PyBuffer_Release(&ud);
    PyBuffer_Release(&ae);
    PyBuffer_Release(&ad);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "G.711 tables: 65536 encode bytes, 256 int16 decode");
        return NULL;
    }
    Py_RETURN_NONE;
}

void dp_g711_encode(int codec, const int16_t *pcm, int n, uint8_t *out)
{
    const uint8_t *t = codec == DP_PCMU ? ulaw_enc : alaw_enc;
    for (int i = 0; i < n; i++)
        out[i] = t[(uint16_t)pcm[i]];
}

/* ---- Opus: function pointers into the libopus that codecs/opus.py loaded ---------------- */

typedef void *(*opus_decoder_create_fn)(int32_t, int, int *);
typedef void (*opus_decoder_destroy_fn)(void *);
typedef int (*opus_decode_fn)(void *, const unsigned char *, int32_t, int16_t *, int, int);
typedef int32_t (*opus_encode_fn)(void *, const int16_t *, int, unsigned char *, int32_t);

static opus_decoder_create_fn opus_decoder_create_p;
static opus_decoder_destroy_fn opus_decoder_destroy_p;
static opus_decode_fn opus_decode_p;
static opus_encode_fn opus_encode_p;

PyObject *dp_set_opus(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long create, destroy, decode, encode;
    if (!PyArg_ParseTuple(args, "KKKK", &create, &destroy, &decode, &encode))
        return NULL;
    if (!create || !destroy || !decode || !encode) {
        PyErr_SetString(PyExc_ValueError, "libopus function addresses must not be NULL");
        return NULL;
    }
    opus_decoder_create_p = (opus_decoder_create_fn)(uintptr_t)create;
    opus_decoder_destroy_p = (opus_decoder_destroy_fn)(uintptr_t)destroy;
    opus_decode_p = (opus_decode_fn)(uintptr_t)decode;
    opus_encode_p = (opus_encode_fn)(uintptr_t)encode;
    Py_RETURN_NONE;
}

int dp_opus_encode(void *state, const int16_t *pcm, int samples, uint8_t *out, int max)
{
    if (opus_encode_p == NULL || state == NULL)
        return -1;
    return (int)opus_encode_p(state, pcm, samples, out, max);
}

int dp_codec_id(const char *name)
{
    if (strcasecmp(name, "PCMU") == 0)
        return DP_PCMU;
    if (strcasecmp(name, "PCMA") == 0)
        return DP_PCMA;
    if (strcasecmp(name, "opus") == 0)
        return DP_OPUS;
    return -1;
}

int dp_codec_ready(int codec)
{
    if (codec == DP_PCMU || codec == DP_PCMA)
        return g711_ready;
    if (codec == DP_OPUS)
        return opus_decode_p != NULL;
    return 0;
}

/* ---- decoders ----------------------------------------------------------------------- */

#define G711_MAX_REPEATS 3

typedef struct {
    dp_decoder base;
    int codec;
    int16_t last[DP_MAX_PCM];
    int last_n; /* 0: nothing decoded yet */
    int lost_run;
} g711_decoder;

static int g711_decode(dp_decoder *d, const uint8_t *payload, int len, int16_t *out, int max)
{
    g711_decoder *g = (g711_decoder *)d;
    if (len <= 0)
        return d->conceal(d, NULL, 0, out, DP_PCM);
    if (len > max)
        len = max;
    const int16_t *t = g->codec == DP_PCMU ? ulaw_dec : alaw_dec;
    for (int i = 0; i < len; i++)
        out[i] = t[payload[i]];
    int keep = len < DP_MAX_PCM ? len : DP_MAX_PCM;
    memcpy(g->last, out, (size_t)keep * sizeof(int16_t));
    g->last_n = keep;
    g->lost_run = 0;
    return len;
}

/* codecs/g711.G711Decoder.conceal: the last frame's tail, halved once more per lost frame. */
static int g711_conceal(dp_decoder *d, const uint8_t *next, int next_len, int16_t *out,
                        int samples)
{
    (void)next;
    (void)next_len;
    g711_decoder *g = (g711_decoder *)d;
    int n = DP_PCM; /* the decoder's own frame; the jitter buffer fits it to `samples` */
    (void)samples;
    g->lost_run++;
    if (g->last_n == 0 || g->lost_run > G711_MAX_REPEATS) {
        memset(out, 0, (size_t)n * sizeof(int16_t));
        return n;
    }
    int shift = g->lost_run;
    if (g->last_n >= n) {
        const int16_t *src = g->last + (g->last_n - n);
        for (int i = 0; i < n; i++)
            out[i] = (int16_t)(src[i] >> shift);
    } else { /* numpy.resize: repeat the shorter frame */
        for (int i = 0; i < n; i++)
            out[i] = (int16_t)(g->last[i % g->last_n] >> shift);
    }
    return n;
}

static void plain_destroy(dp_decoder *d) { free(d); }

typedef struct {
    dp_decoder base;
    void *st;
} opus_decoder;

static int opus_dec_decode(dp_decoder *d, const uint8_t *payload, int len, int16_t *out, int max)
{
    opus_decoder *o = (opus_decoder *)d;
    if (len <= 0)
        return d->conceal(d, NULL, 0, out, DP_PCM);
    return opus_decode_p(o->st, payload, len, out, max, 0);
}

/* codecs/opus.OpusDecoder.conceal: in-band FEC from the next packet when there is one,
 * else libopus PLC. */
static int opus_dec_conceal(dp_decoder *d, const uint8_t *next, int next_len, int16_t *out,
                            int samples)
{
    opus_decoder *o = (opus_decoder *)d;
    int n = samples > 0 ? samples : DP_PCM;
    if (next != NULL && next_len > 0) {
        int got = opus_decode_p(o->st, next, next_len, out, n, 1);
        if (got > 0)
            return got;
    }
    int got = opus_decode_p(o->st, NULL, 0, out, n, 0);
    if (got < 0) {
        memset(out, 0, (size_t)n * sizeof(int16_t));
        return n;
    }
    return got;
}

static void opus_dec_destroy(dp_decoder *d)
{
    opus_decoder *o = (opus_decoder *)d;
    if (o->st != NULL && opus_decoder_destroy_p != NULL)
        opus_decoder_destroy_p(o->st);
    free(o);
}

dp_decoder *dp_decoder_new(int codec)
{
    if (codec == DP_PCMU || codec == DP_PCMA) {
        if (!g711_ready)
            return NULL;
        g711_decoder *g = calloc(1, sizeof *g);
        if (g == NULL)
            return NULL;
        g->base.decode = g711_decode;
        g->base.conceal = g711_conceal;
        g->base.destroy = plain_destroy;
        g->codec = codec;
        return &g->base;
    }
    if (codec == DP_OPUS) {
        if (opus_decoder_create_p == NULL)
            return NULL;
        int err = 0;
        void *st = opus_decoder_create_p(8000, 1, &err);
        if (st == NULL || err != 0)
            return NULL;
        opus_decoder *o = calloc(1, sizeof *o);
        if (o == NULL) {
            opus_decoder_destroy_p(st);
            return NULL;
        }
        o->base.decode = opus_dec_decode;
        o->base.conceal = opus_dec_conceal;
        o->base.destroy = opus_dec_destroy;
        o->st = st;
        return &o->base;
    }
    return NULL;
}

/* ---- RFC 6464 level meter (levels.AudioLevelMeter) ------------------------------------- */

#define LEVEL_MIN_DBOV (-127.0)
#define FLOOR_MIN_DBOV (-80.0)
#define FULL_SCALE_POWER (32768.0 * 32768.0)

void dp_meter_init(dp_meter *m)
{
    m->margin_db = 12.0;
    m->absolute_floor_dbov = -55.0;
    m->hangover_frames = 10;
    m->floor_rise_db = 0.15;
    m->max_level = 126;
    m->noise_floor_dbov = FLOOR_MIN_DBOV;
    m->hangover = 0;
}

int dp_meter_measure_byte(dp_meter *m, double value)
{
    int level;
    if (isnan(value) || value <= LEVEL_MIN_DBOV) {
        level = 127;
    } else {
        double r = nearbyint(-value); /* Python's round(): half to even */
        level = r < 0 ? 0 : (r > 127 ? 127 : (int)r);
    }
    if (value < m->noise_floor_dbov)
        m->noise_floor_dbov = value > FLOOR_MIN_DBOV ? value : FLOOR_MIN_DBOV;
    else
        m->noise_floor_dbov += m->floor_rise_db;
    int active = value > m->absolute_floor_dbov && value > m->noise_floor_dbov + m->margin_db;
    int voice;
    if (active) {
        m->hangover = m->hangover_frames;
        voice = 1;
    } else if (m->hangover > 0) {
        m->hangover--;
        voice = 1;
    } else {
        voice = 0;
    }
    if (voice) {
        if (level > 126)
            level = 126; /* never "muted" on speech: Jigasi would drop it */
        return 0x80 | (level < m->max_level ? level : m->max_level);
    }
    return level < m->max_level ? level : m->max_level;
}

int dp_meter_level_byte(dp_meter *m, const int16_t *pcm, int n)
{
    if (pcm == NULL || n <= 0)
        return dp_meter_measure_byte(m, -INFINITY);
    double acc = 0.0;
    for (int i = 0; i < n; i++)
        acc += (double)pcm[i] * (double)pcm[i];
    double power = acc / n;
    if (power <= 0.0)
        return dp_meter_measure_byte(m, -INFINITY);
    return dp_meter_measure_byte(m, 10.0 * log10(power / FULL_SCALE_POWER));
}

/* ---- mix_pcm ---------------------------------------------------------------------------- */

#define FULL_SCALE 32767
#define KNEE ((int)(0.8 * FULL_SCALE))

void dp_mix(const int16_t *const *frames, int count, int n, int16_t *out)
{
    if (count <= 0) {
        memset(out, 0, (size_t)n * sizeof(int16_t));
        return;
    }
    if (count == 1) {
        if (out != frames[0])
            memcpy(out, frames[0], (size_t)n * sizeof(int16_t));
        return;
    }
    int32_t acc[DP_MAX_PCM];
    int peak = 0;
    for (int i = 0; i < n; i++) {
        int32_t s = 0;
        for (int k = 0; k < count; k++)
            s += frames[k][i];
        acc[i] = s;
        int mag = s < 0 ? -s : s;
        if (mag > peak)
            peak = mag;
    }
    if (peak <= FULL_SCALE) {
        for (int i = 0; i < n; i++)
            out[i] = (int16_t)acc[i];
        return;
    }
    const float span = (float)(FULL_SCALE - KNEE);
    for (int i = 0; i < n; i++) {
        float x = (float)acc[i];
        float mag = fabsf(x);
        if (mag > KNEE)
            mag = KNEE + span * tanhf((mag - KNEE) / span);
        if (mag > FULL_SCALE)
            mag = FULL_SCALE;
        out[i] = (int16_t)copysignf(mag, x);
    }
}

/* ---- Python type: _dataplane.AudioLevelMeter (levels.AudioLevelMeter's send-side API) --- */

static int meter_init(DpMeterObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"margin_db", "absolute_floor_dbov", "hangover_frames",
                            "floor_rise_db", "max_level", NULL};
    dp_meter_init(&self->m);
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|ddidi", names, &self->m.margin_db,
                                     &self->m.absolute_floor_dbov, &self->m.hangover_frames,
                                     &self->m.floor_rise_db, &self->m.max_level))
        return -1;
    if (self->m.max_level < 0 || self->m.max_level > 127) {
        PyErr_SetString(PyExc_ValueError, "max_level must be within 0..127");
        return -1;
    }
    return 0;
}

static PyObject *meter_level_byte(DpMeterObject *self, PyObject *pcm)
{
    if (pcm == Py_None)
        return PyLong_FromLong(dp_meter_level_byte(&self->m, NULL, 0));
    Py_buffer view;
    if (PyObject_GetBuffer(pcm, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (view.itemsize != 2) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "level_byte takes int16 samples");
        return NULL;
    }
    int r = dp_meter_level_byte(&self->m, (const int16_t *)view.buf, (int)(view.len / 2));
    PyBuffer_Release(&view);
    return PyLong_FromLong(r);
}

static PyObject *meter_measure_byte(DpMeterObject *self, PyObject *value)
{
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(dp_meter_measure_byte(&self->m, v));
}

static PyMethodDef meter_methods[] = {
    {"level_byte", (PyCFunction)meter_level_byte, METH_O,
     "RFC 6464 byte (V flag | level) for one int16 frame; None = digital silence."},
    {"measure_byte", (PyCFunction)meter_measure_byte, METH_O,
     "RFC 6464 byte for a level in dBov (-inf = digital silence)."},
    {NULL},
};

static PyMemberDef meter_members[] = {
    {"noise_floor_dbov", T_DOUBLE, offsetof(DpMeterObject, m.noise_floor_dbov), 0, NULL},
    {"margin_db", T_DOUBLE, offsetof(DpMeterObject, m.margin_db), 0, NULL},
    {"absolute_floor_dbov", T_DOUBLE, offsetof(DpMeterObject, m.absolute_floor_dbov), 0, NULL},
    {"floor_rise_db", T_DOUBLE, offsetof(DpMeterObject, m.floor_rise_db), 0, NULL},
    {"hangover_frames", T_INT, offsetof(DpMeterObject, m.hangover_frames), 0, NULL},
    {"max_level", T_INT, offsetof(DpMeterObject, m.max_level), READONLY, NULL},
    {NULL},
};

PyTypeObject DpMeterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dialbridge.media._dataplane.AudioLevelMeter",
    .tp_basicsize = sizeof(DpMeterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "levels.AudioLevelMeter in C (the send path's RFC 6464 byte with VAD).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)meter_init,
    .tp_methods = meter_methods,
    .tp_members = meter_members,
};

int dp_meter_add_type(PyObject *module)
{
    if (PyType_Ready(&DpMeterType) < 0)
        return -1;
    Py_INCREF(&DpMeterType);
    if (PyModule_AddObject(module, "AudioLevelMeter", (PyObject *)&DpMeterType) < 0) {
        Py_DECREF(&DpMeterType);
        return -1;
    }
    return 0;
}
