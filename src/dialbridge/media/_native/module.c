/* dialbridge.media._dataplane: the engine's per-tick entry points.
 *
 * drain(): read every RTP socket once per tick (recvmmsg, kernel arrival timestamps) and
 *   take the common packet -- audio of the negotiated payload type from the latched source --
 *   straight into the leg's native playout, doing what MediaSession.receive_rtp does for it
 *   (RFC 3550 A.1 counters, RFC 6464 level, liveness). Everything else goes back to Python.
 * tick_plain(): one bridged direction with nothing special going on (no prompt, no DTMF
 *   being sent, no in-band detector, no relay): mix the source, then what
 *   MediaSession.send_audio + _send_packet do -- encode, RFC 6464 byte, RTP header, sendto.
 *
 * Both read and write the MediaSession's own attributes, so the Python code paths and these
 * share one state; session.py says which attributes (search "native").
 */
#include "dataplane.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 32
#define DGRAM 2048

static PyObject *s_mixer, *s_relay_to, *s_timed_out, *s_latched, *s_audio_pt, *s_level_id,
    *s_counters, *s_latched_last, *s_last_rtp, *s_seq, *s_ts, *s_ts_step, *s_first_packet,
    *s_ssrc, *s_meter, *s_encoder, *s_st, *s_native_codec, *s_silence_payload,
    *s_comfort_payload, *s_packets_sent, *s_octets_sent, *s_last_ts, *s_last_time, *s_params,
    *s_remote_rtp, *s_packets_dropped;

static int intern_names(void)
{
#define I(var, text)                                                                          \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                    \
        return -1;
    I(s_mixer, "mixer") I(s_relay_to, "relay_to") I(s_timed_out, "_timed_out");
    I(s_latched, "latched") I(s_audio_pt, "_audio_pt") I(s_level_id, "_level_id");
    I(s_counters, "_counters") I(s_latched_last, "_latched_last") I(s_last_rtp, "last_rtp");
    I(s_seq, "_seq") I(s_ts, "_ts") I(s_ts_step, "_ts_step") I(s_first_packet, "_first_packet");
    I(s_ssrc, "ssrc") I(s_meter, "meter") I(s_encoder, "encoder") I(s_st, "_st");
    I(s_native_codec, "native_codec") I(s_silence_payload, "_silence_payload");
    I(s_comfort_payload, "comfort_payload") I(s_packets_sent, "packets_sent");
    I(s_octets_sent, "_octets_sent") I(s_last_ts, "_last_ts") I(s_last_time, "_last_time");
    I(s_params, "params") I(s_remote_rtp, "remote_rtp");
    I(s_packets_dropped, "packets_dropped");
#undef I
    return 0;
}

/* ("host", port) -> sockaddr; 0 on success. */
static int to_sockaddr(PyObject *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2)
        return -1;
    const char *host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(addr, 0));
    long port = PyLong_AsLong(PyTuple_GET_ITEM(addr, 1));
    if (host == NULL || port < 0 || port > 65535) {
        PyErr_Clear();
        return -1;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 0;
    }
    return -1;
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

static PyObject *addr_tuple(const struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)ss;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, ntohs(v4->sin_port));
    }
    const struct sockaddr_in6 *v6 = (const void *)ss;
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    return Py_BuildValue("(si)", host, ntohs(v6->sin6_port));
}

/* session.py _find_level: RFC 8285 §4.2 one-byte elements. -1 when absent. */
static int find_level(const uint8_t *d, int pos, int end, int level_id)
{
    while (pos < end) {
        int head = d[pos];
        if (head == 0) {
            pos++;
            continue;
        }
        int id = head >> 4;
        if (id == 15)
            return -1;
        if (id == level_id)
            return pos + 1 < end ? d[pos + 1] & 0x7F : -1;
        pos += (head & 0x0F) + 2;
    }
    return -1;
}

/* The RFC 3550 A.1 counters of MediaSession.receive_rtp: ssrc -> [received, max_seq, cycles,
 * base_seq]. Returns -1 on a Python error. */
static int count_packet(PyObject *counters, uint32_t ssrc, unsigned seq)
{
    PyObject *key = PyLong_FromUnsignedLong(ssrc);
    if (key == NULL)
        return -1;
    PyObject *c = PyDict_GetItemWithError(counters, key);
    if (c == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        PyObject *fresh = Py_BuildValue("[iIiI]", 1, seq, 0, seq);
        int r = fresh ? PyDict_SetItem(counters, key, fresh) : -1;
        Py_XDECREF(fresh);
        Py_DECREF(key);
        return r;
    }
    Py_DECREF(key);
    if (!PyList_Check(c) || PyList_GET_SIZE(c) < 3)
        return 0;
    long received = PyLong_AsLong(PyList_GET_ITEM(c, 0));
    long max_seq = PyLong_AsLong(PyList_GET_ITEM(c, 1));
    if (PyErr_Occurred())
        return -1;
    PyList_SetItem(c, 0, PyLong_FromLong(received + 1));
    unsigned delta = (seq - (unsigned)max_seq) & 0xFFFF;
    if (delta > 0 && delta < 3000) { /* MAX_DROPOUT */
        if ((long)seq < max_seq) {
            long cycles = PyLong_AsLong(PyList_GET_ITEM(c, 2));
            PyList_SetItem(c, 2, PyLong_FromLong(cycles + 0x10000));
        }
        PyList_SetItem(c, 1, PyLong_FromLong((long)seq));
    }
    return 0;
}

typedef struct {
    int ok; /* the fast path applies to this leg now */
    dp_mixer *mixer;
    struct sockaddr_storage latched;
    int audio_pt, level_id;
    PyObject *counters; /* borrowed from the session for the duration of drain() */
} leg_view;

static int view_leg(PyObject *session, leg_view *v)
{
    v->ok = 0;
    v->counters = NULL;
    if (session == Py_None)
        return 0;
    PyObject *mixer = PyObject_GetAttr(session, s_mixer);
    PyObject *relay = mixer ? PyObject_GetAttr(session, s_relay_to) : NULL;
    PyObject *timed_out = relay ? PyObject_GetAttr(session, s_timed_out) : NULL;
    PyObject *latched = timed_out ? PyObject_GetAttr(session, s_latched) : NULL;
    PyObject *pt = latched ? PyObject_GetAttr(session, s_audio_pt) : NULL;
    PyObject *lid = pt ? PyObject_GetAttr(session, s_level_id) : NULL;
    PyObject *counters = lid ? PyObject_GetAttr(session, s_counters) : NULL;
    int r = counters ? 0 : -1;
    if (r == 0 && PyObject_TypeCheck(mixer, &DpPlayoutType) && relay == Py_None &&
        timed_out == Py_False && latched != Py_None && PyDict_Check(counters)) {
        socklen_t len;
        v->mixer = ((DpPlayoutObject *)mixer)->mixer;
        v->audio_pt = (int)PyLong_AsLong(pt);
        v->level_id = lid == Py_None ? -1 : (int)PyLong_AsLong(lid);
        if (PyErr_Occurred())
            r = -1;
        else if (to_sockaddr(latched, &v->latched, &len) == 0) {
            v->ok = 1;
            v->counters = counters; /* the session keeps it alive */
        }
    }
    Py_XDECREF(mixer);
    Py_XDECREF(relay);
    Py_XDECREF(timed_out);
    Py_XDECREF(latched);
    Py_XDECREF(pt);
    Py_XDECREF(lid);
    Py_XDECREF(counters);
    return r;
}

/* 1: taken by the native path; 0: hand to Python; -1: Python error. */
static int take_packet(leg_view *v, const uint8_t *d, int n, double arrival)
{
    if (n < 12 || (d[0] & 0xC0) != 0x80)
        return 0;
    int b1 = d[1];
    if (b1 >= 192 && b1 <= 223)
        return 0; /* RTCP on the RTP port */
    if ((b1 & 0x7F) != v->audio_pt)
        return 0; /* telephone-event, CN, others: Python */
    int low = d[0] & 0x3F, level = -1, start;
    if (low == 0) {
        start = 12;
    } else if (low == 0x10 && n >= 16) {
        int profile = (d[12] << 8) | d[13], words = (d[14] << 8) | d[15];
        int end = 16 + 4 * words;
        if (end > n)
            return 0;
        if (profile == 0xBEDE && v->level_id >= 0) {
            if (end > 17 && d[16] == (v->level_id << 4))
                level = d[17] & 0x7F;
            else
                level = find_level(d, 16, end, v->level_id);
        }
        start = end;
    } else {
        return 0; /* CSRCs or padding: the general parser */
    }
    unsigned seq = ((unsigned)d[2] << 8) | d[3];
    uint32_t ts = ((uint32_t)d[4] << 24) | ((uint32_t)d[5] << 16) | ((uint32_t)d[6] << 8) | d[7];
    uint32_t ssrc =
        ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    if (n - start > DP_MAX_PAYLOAD)
        return 0;
    if (count_packet(v->counters, ssrc, seq) < 0)
        return -1;
    dp_mixer_push(v->mixer, ssrc, (uint16_t)seq, ts, d + start, n - start, arrival, level);
    return 1;
}

static long get_long(PyObject *o, PyObject *name, int *err);
static int set_long(PyObject *o, PyObject *name, long value);

static uint8_t rx_buf[BATCH][DGRAM];
static struct sockaddr_storage rx_addr[BATCH];
static char rx_ctl[BATCH][CMSG_SPACE(sizeof(struct timespec)) + 64];

static PyObject *drain(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *legs;
    double now, wall_now;
    if (!PyArg_ParseTuple(args, "O!dd", &PyList_Type, &legs, &now, &wall_now))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    Py_ssize_t nlegs = PyList_GET_SIZE(legs);
    for (Py_ssize_t li = 0; li < nlegs; li++) {
        PyObject *item = PyList_GET_ITEM(legs, li);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "drain() takes a list of (fd, session)");
            goto fail;
        }
        int fd = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        PyObject *session = PyTuple_GET_ITEM(item, 1);
        if (PyErr_Occurred())
            goto fail;
        leg_view view;
        int viewed = 0;
        double latest = -1.0;
        for (int rounds = 0; rounds < 64; rounds++) { /* bounded: 2048 datagrams a tick */
            for (int i = 0; i < BATCH; i++) {
                iov[i].iov_base = rx_buf[i];
                iov[i].iov_len = DGRAM;
                memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
                msgs[i].msg_hdr.msg_name = &rx_addr[i];
                msgs[i].msg_hdr.msg_namelen = sizeof rx_addr[i];
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_control = rx_ctl[i];
                msgs[i].msg_hdr.msg_controllen = sizeof rx_ctl[i];
            }
            int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0)
                break; /* EAGAIN (drained), or an error the socket reports again later */
            for (int i = 0; i < got; i++) {
                double arrival = now;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL;
                     c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                        struct timespec tsp;
                        memcpy(&tsp, CMSG_DATA(c), sizeof tsp);
                        double age = wall_now - ((double)tsp.tv_sec + tsp.tv_nsec * 1e-9);
                        if (age > 0 && age < 1.0)
                            arrival = now - age;
                    }
                }
                if (session == Py_None)
                    continue; /* no remote description yet: dropped, as before */
                int n = (int)msgs[i].msg_len;
                if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                    /* larger than any RTP packet we accept: counted as dropped, as Python would */
                    int err = 0;
                    long dropped = get_long(session, s_packets_dropped, &err);
                    if (err || set_long(session, s_packets_dropped, dropped + 1) < 0)
                        goto fail;
                    continue;
                }
                if (!viewed) {
                    if (view_leg(session, &view) < 0)
                        goto fail;
                    viewed = 1;
                }
                int taken = 0;
                if (view.ok && same_addr(&rx_addr[i], &view.latched)) {
                    taken = take_packet(&view, rx_buf[i], n, arrival);
                    if (taken < 0)
                        goto fail;
                    if (taken && arrival > latest) /* what Python gets, it judges itself */
                        latest = arrival;
                }
                if (!taken) {
                    PyObject *addr = addr_tuple(&rx_addr[i]);
                    PyObject *entry =
                        addr ? Py_BuildValue("(Oy#Nd)", session, (const char *)rx_buf[i],
                                             (Py_ssize_t)n, addr, arrival)
                             : NULL;
                    if (entry == NULL || PyList_Append(out, entry) < 0) {
                        Py_XDECREF(entry);
                        goto fail;
                    }
                    Py_DECREF(entry);
                }
            }
            if (got < BATCH)
                break;
        }
        if (latest >= 0) { /* MediaSession.receive_rtp's liveness, once per leg and tick */
            PyObject *t = PyFloat_FromDouble(latest);
            if (t == NULL || PyObject_SetAttr(session, s_latched_last, t) < 0 ||
                PyObject_SetAttr(session, s_last_rtp, t) < 0) {
                Py_XDECREF(t);
                goto fail;
            }
            Py_DECREF(t);
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---- tick_plain --------------------------------------------------------------------- */

static long get_long(PyObject *o, PyObject *name, int *err)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) {
        *err = 1;
        return 0;
    }
    long r = PyLong_AsLong(v);
    Py_DECREF(v);
    if (r == -1 && PyErr_Occurred())
        *err = 1;
    return r;
}

static int set_long(PyObject *o, PyObject *name, long value)
{
    PyObject *v = PyLong_FromLong(value);
    int r = v ? PyObject_SetAttr(o, name, v) : -1;
    Py_XDECREF(v);
    return r;
}

static int set_unsigned(PyObject *o, PyObject *name, unsigned long value)
{
    PyObject *v = PyLong_FromUnsignedLong(value);
    int r = v ? PyObject_SetAttr(o, name, v) : -1;
    Py_XDECREF(v);
    return r;
}

static PyObject *tick_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "tick_plain(source, sink, fd, muted, now)");
        return NULL;
    }
    PyObject *source = args[0], *sink = args[1];
    int fd = (int)PyLong_AsLong(args[2]);
    int muted = PyObject_IsTrue(args[3]);
    double now = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred() || muted < 0)
        return NULL;

    /* Receive half: Bridge.tick's source.mixer.mix(now). */
    PyObject *mixer = PyObject_GetAttr(source, s_mixer);
    if (mixer == NULL)
        return NULL;
    if (!PyObject_TypeCheck(mixer, &DpPlayoutType)) {
        Py_DECREF(mixer);
        PyErr_SetString(PyExc_TypeError, "tick_plain: the source has no native playout");
        return NULL;
    }
    int16_t pcm[DP_PCM];
    int sources = dp_mixer_mix(((DpPlayoutObject *)mixer)->mixer, now, pcm, NULL);
    Py_DECREF(mixer);
    const int16_t *audio = sources > 0 && !muted ? pcm : NULL;

    /* Send half: MediaSession.send_audio + _send_packet. */
    int err = 0;
    long seq = get_long(sink, s_seq, &err);
    long ts = get_long(sink, s_ts, &err);
    long step = get_long(sink, s_ts_step, &err);
    long pt = get_long(sink, s_audio_pt, &err);
    long codec = get_long(sink, s_native_codec, &err);
    long ssrc = get_long(sink, s_ssrc, &err);
    if (err)
        return NULL;
    PyObject *first_obj = PyObject_GetAttr(sink, s_first_packet);
    if (first_obj == NULL)
        return NULL;
    int first = PyObject_IsTrue(first_obj);
    Py_DECREF(first_obj);
    if (set_long(sink, s_seq, (seq + 1) & 0xFFFF) < 0 ||
        set_unsigned(sink, s_ts, ((unsigned long)ts + (unsigned long)step) & 0xFFFFFFFFUL) < 0)
        return NULL;

    uint8_t packet[20 + DP_MAX_PAYLOAD];
    uint8_t *body = packet + 20;
    int body_len = 0;
    PyObject *silence = NULL;
    if (audio == NULL && !first) {
        /* Comfort silence: the cached payload (the encoder is not run). */
        silence = PyObject_GetAttr(sink, s_silence_payload);
        if (silence == Py_None) {
            Py_DECREF(silence);
            silence = PyObject_CallMethodNoArgs(sink, s_comfort_payload);
        }
        if (silence == NULL)
            return NULL;
        char *data;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(silence, &data, &len) < 0 || len > DP_MAX_PAYLOAD) {
            Py_DECREF(silence);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "comfort payload too long");
            return NULL;
        }
        memcpy(body, data, (size_t)len);
        body_len = (int)len;
        Py_DECREF(silence);
    } else {
        static const int16_t zeros[DP_PCM];
        const int16_t *in = audio != NULL ? audio : zeros;
        if (codec == DP_PCMU || codec == DP_PCMA) {
            dp_g711_encode((int)codec, in, DP_PCM, body);
            body_len = DP_PCM;
        } else if (codec == DP_OPUS) {
            PyObject *enc = PyObject_GetAttr(sink, s_encoder);
            PyObject *st = enc ? PyObject_GetAttr(enc, s_st) : NULL;
            Py_XDECREF(enc);
            if (st == NULL)
                return NULL;
            void *state = PyLong_AsVoidPtr(st);
            Py_DECREF(st);
            if (PyErr_Occurred())
                return NULL;
            body_len = dp_opus_encode(state, in, DP_PCM, body, DP_MAX_PAYLOAD);
            if (body_len < 0) {
                PyErr_Format(PyExc_RuntimeError, "opus_encode failed (%d)", body_len);
                return NULL;
            }
        } else {
            PyErr_SetString(PyExc_ValueError, "tick_plain: the sink has no native encoder");
            return NULL;
        }
    }
    if (first && PyObject_SetAttr(sink, s_first_packet, Py_False) < 0)
        return NULL;

    PyObject *lid_obj = PyObject_GetAttr(sink, s_level_id);
    if (lid_obj == NULL)
        return NULL;
    long level_id = lid_obj == Py_None ? -1 : PyLong_AsLong(lid_obj);
    Py_DECREF(lid_obj);
    uint8_t b1 = (uint8_t)((first ? 0x80 : 0) | (pt & 0x7F));
    uint8_t *h = packet + 20;
    int hlen = 12;
    if (level_id >= 0) {
        hlen = 20;
        PyObject *meter = PyObject_GetAttr(sink, s_meter);
        if (meter == NULL)
            return NULL;
        int level;
        if (PyObject_TypeCheck(meter, &DpMeterType)) {
            level = dp_meter_level_byte(&((DpMeterObject *)meter)->m, audio, DP_PCM);
        } else {
            Py_DECREF(meter);
            PyErr_SetString(PyExc_TypeError, "tick_plain: the sink has no native meter");
            return NULL;
        }
        Py_DECREF(meter);
        h -= 20;
        h[12] = 0xBE;
        h[13] = 0xDE;
        h[14] = 0;
        h[15] = 1;
        h[16] = (uint8_t)(level_id << 4);
        h[17] = (uint8_t)level;
        h[18] = 0;
        h[19] = 0;
        h[0] = 0x90;
    } else {
        h -= 12;
        h[0] = 0x80;
    }
    h[1] = b1;
    h[2] = (uint8_t)(seq >> 8);
    h[3] = (uint8_t)seq;
    unsigned long uts = (unsigned long)ts;
    h[4] = (uint8_t)(uts >> 24);
    h[5] = (uint8_t)(uts >> 16);
    h[6] = (uint8_t)(uts >> 8);
    h[7] = (uint8_t)uts;
    unsigned long us = (unsigned long)ssrc;
    h[8] = (uint8_t)(us >> 24);
    h[9] = (uint8_t)(us >> 16);
    h[10] = (uint8_t)(us >> 8);
    h[11] = (uint8_t)us;

    err = 0;
    long sent = get_long(sink, s_packets_sent, &err);
    long octets = get_long(sink, s_octets_sent, &err);
    if (err)
        return NULL;
    PyObject *t = PyFloat_FromDouble(now);
    if (t == NULL || set_long(sink, s_packets_sent, sent + 1) < 0 ||
        set_long(sink, s_octets_sent, octets + body_len) < 0 ||
        set_unsigned(sink, s_last_ts, uts) < 0 || PyObject_SetAttr(sink, s_last_time, t) < 0) {
        Py_XDECREF(t);
        return NULL;
    }
    Py_DECREF(t);

    PyObject *dest = PyObject_GetAttr(sink, s_latched);
    if (dest == Py_None) {
        Py_DECREF(dest);
        PyObject *params = PyObject_GetAttr(sink, s_params);
        dest = params ? PyObject_GetAttr(params, s_remote_rtp) : NULL;
        Py_XDECREF(params);
    }
    if (dest == NULL)
        return NULL;
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (dest != Py_None && to_sockaddr(dest, &ss, &sslen) == 0)
        (void)sendto(fd, h, (size_t)(hlen + body_len), MSG_DONTWAIT, (struct sockaddr *)&ss,
                     sslen); /* a full or failing socket loses this packet, like UDP */
    Py_DECREF(dest);
    Py_RETURN_NONE;
}

static PyObject *enable_timestamps(PyObject *self, PyObject *arg)
{
    (void)self;
    int fd = (int)PyLong_AsLong(arg);
    if (PyErr_Occurred())
        return NULL;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *codec_id(PyObject *self, PyObject *arg)
{
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL)
        return NULL;
    int id = dp_codec_id(name);
    if (id < 0 || !dp_codec_ready(id))
        Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyMethodDef module_methods[] = {
    {"set_g711_tables", dp_set_g711_tables, METH_VARARGS,
     "set_g711_tables(ulaw_encode, ulaw_decode, alaw_encode, alaw_decode): codecs/g711.py's"},
    {"set_opus", dp_set_opus, METH_VARARGS,
     "set_opus(create, destroy, decode, encode): libopus function addresses"},
    {"codec_id", codec_id, METH_O, "Native codec id for an SDP codec name, or None."},
    {"enable_timestamps", enable_timestamps, METH_O, "SO_TIMESTAMPNS on an RTP socket."},
    {"drain", drain, METH_VARARGS,
     "drain([(fd, session)], now, wall_now) -> [(session, data, addr, arrival)] for Python"},
    {"tick_plain", (PyCFunction)(void (*)(void))tick_plain, METH_FASTCALL,
     "tick_plain(source, sink, fd, muted, now): one plain bridged direction, sent"},
    {NULL},
};

static struct PyModuleDef dataplane_module = {
    PyModuleDef_HEAD_INIT, "dialbridge.media._dataplane",
    "The C data plane of the media engine (see dataplane.h and docs/media-engine.md).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__dataplane(void)
{
    if (intern_names() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&dataplane_module);
    if (m == NULL)
        return NULL;
    if (dp_jb_add_type(m) < 0 || dp_meter_add_type(m) < 0 || dp_mixer_add_type(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
