/* dialbridge media data plane in C: the per-packet and per-tick work of bridged calls.
 *
 * The Python engine (media/session.py, bridge.py, mixer.py, jitter.py) is the reference and
 * the control plane; this extension runs the same algorithms for legs that are in the steady
 * bridged state, so that a bridged call costs no Python per packet. See docs/media-engine.md.
 *
 * Pieces (one file each, all compiled into dialbridge.media._dataplane):
 *   jb.c      jitter buffer, a port of media/jitter.py (same rules, same stats)
 *   dsp.c     G.711 tables, RFC 6464 level meter (port of levels.AudioLevelMeter), mixing
 *   mixer.c   N-loudest mixer over jitter buffers (port of mixer.Mixer / SingleStreamPlayout)
 *   module.c  Python types: decoders/encoders, fast legs, socket draining, the bridged tick
 */
#ifndef DIALBRIDGE_DATAPLANE_H
#define DIALBRIDGE_DATAPLANE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <structmember.h>

#define DP_PCM 160          /* samples per 20 ms frame at 8 kHz (internal audio format) */
#define DP_MAX_PCM 960      /* most samples one packet may decode to (120 ms at 8 kHz) */
#define DP_MAX_PAYLOAD 1500 /* larger payloads are dropped */
#define DP_SILENCE_LEVEL 127

/* ---- decoders (used by the jitter buffer) ------------------------------------------- */

typedef struct dp_decoder dp_decoder;
struct dp_decoder {
    /* Decode one payload into out (at most max samples). Returns the number of samples, or
     * < 0 for a corrupt payload (the jitter buffer then conceals). */
    int (*decode)(dp_decoder *self, const uint8_t *payload, int len, int16_t *out, int max);
    /* One lost frame of `samples` samples. `next` is the following packet's payload when it
     * is already buffered (Opus in-band FEC), else NULL. Returns samples written (the jitter
     * buffer pads or cuts to `samples`, as jitter.JitterBuffer._fit does). */
    int (*conceal)(dp_decoder *self, const uint8_t *next, int next_len, int16_t *out,
                   int samples);
    void (*destroy)(dp_decoder *self);
};

/* ---- jitter buffer (jb.c): media/jitter.py in C ------------------------------------- */

enum { DP_AUDIO = 0, DP_PLC = 1, DP_SILENCE = 2 }; /* jitter.FrameKind order */

typedef struct {
    uint64_t received, played, concealed, silent, late, duplicates, empty;
    uint64_t dropped_for_depth, inserted_for_depth, resyncs, reanchors;
    double jitter; /* RFC 3550 A.8, RTP timestamp units */
} dp_jb_stats;

typedef struct dp_jb dp_jb;

/* Takes ownership of `decoder` (destroyed with the buffer). NULL on allocation failure. */
dp_jb *dp_jb_new(dp_decoder *decoder, int clock_rate, int frame_samples, int pcm_samples,
                 double min_delay, double max_delay, int max_plc_frames);
void dp_jb_free(dp_jb *jb);
/* Returns 1 if queued, 0 if dropped (empty, late, duplicate); as JitterBuffer.push_payload. */
int dp_jb_push(dp_jb *jb, uint32_t ssrc, uint16_t seq, uint32_t ts, const uint8_t *payload,
               int len, double now, int level);
/* One 20 ms frame: returns its kind (DP_AUDIO/DP_PLC/DP_SILENCE). With decode != 0, pcm
 * (pcm_samples long) receives the audio (zeros for silence) and *level the packet's RFC 6464
 * level (DP_SILENCE_LEVEL when none); with decode == 0 nothing is decoded (as pop(now, False)). */
int dp_jb_pop(dp_jb *jb, double now, int decode, int16_t *pcm, int *level);
/* As JitterBuffer.peek_level: the level of the frame the next pop plays (may start playout). */
int dp_jb_peek_level(dp_jb *jb, double now);
const dp_jb_stats *dp_jb_get_stats(const dp_jb *jb);
int dp_jb_target_frames(const dp_jb *jb);
int dp_jb_playing(const dp_jb *jb);
/* 1 and *ssrc set when the buffer has seen a stream; *last_arrival < 0 when nothing came. */
int dp_jb_ssrc(const dp_jb *jb, uint32_t *ssrc);
double dp_jb_last_arrival(const dp_jb *jb);
/* SingleStreamPlayout.remove: forget the timeline (and the SSRC when forget_ssrc). */
void dp_jb_reset(dp_jb *jb, int forget_ssrc);
/* The buffer inside a _dataplane.JitterBuffer (borrowed), or NULL with TypeError set. */
dp_jb *dp_jb_from_object(PyObject *obj);

/* Python type _dataplane.JitterBuffer (for tests: same API as jitter.JitterBuffer). */
int dp_jb_add_type(PyObject *module);

/* ---- codecs and DSP (dsp.c) ----------------------------------------------------------- */

enum { DP_PCMU = 0, DP_PCMA = 1, DP_OPUS = 2 };

/* Codec name ("PCMU", "PCMA", "opus", any case) -> DP_*, or -1 when the data plane has no
 * native path for it (the engine then keeps the Python path for that leg). */
int dp_codec_id(const char *name);
/* 1 once set_g711_tables()/set_opus() have been called (module functions, see module.c). */
int dp_codec_ready(int codec);
void dp_g711_encode(int codec, const int16_t *pcm, int n, uint8_t *out);
/* A new decoder for one stream (G.711 concealment repeats the last frame, halving it each
 * time, three times, as codecs/g711.G711Decoder does; Opus uses libopus PLC and FEC). */
dp_decoder *dp_decoder_new(int codec);
/* opus_encode() on an encoder created by codecs/opus.OpusEncoder (its state pointer). */
int dp_opus_encode(void *state, const int16_t *pcm, int samples, uint8_t *out, int max);

/* RFC 6464 level meter with VAD: levels.AudioLevelMeter in C. */
typedef struct {
    double margin_db, absolute_floor_dbov, floor_rise_db, noise_floor_dbov;
    int hangover_frames, max_level, hangover;
} dp_meter;
void dp_meter_init(dp_meter *m);
int dp_meter_measure_byte(dp_meter *m, double dbov); /* -INFINITY = digital silence */
int dp_meter_level_byte(dp_meter *m, const int16_t *pcm, int n); /* pcm NULL = silence */
/* Sum frames with clipping protection (mixer.mix_pcm): int32 sum, tanh knee, hard clip. */
void dp_mix(const int16_t *const *frames, int count, int n, int16_t *out);

PyObject *dp_set_g711_tables(PyObject *self, PyObject *args);
PyObject *dp_set_opus(PyObject *self, PyObject *args);
int dp_meter_add_type(PyObject *module);
extern PyTypeObject DpMeterType;
typedef struct {
    PyObject_HEAD
    dp_meter m;
} DpMeterObject;

/* ---- mixer (mixer.c): mixer.Mixer and mixer.SingleStreamPlayout in C -------------------- */

typedef struct dp_mixer dp_mixer;
/* single != 0: one stream, a new SSRC replaces the old one (SingleStreamPlayout). */
dp_mixer *dp_mixer_new(int codec, int single, int clock_rate, int frame_samples,
                       int max_streams, int quiet_level, double stream_timeout,
                       double min_delay, double max_delay);
void dp_mixer_free(dp_mixer *m);
/* level < 0: the packet carried no RFC 6464 level. Returns 1 if queued. */
int dp_mixer_push(dp_mixer *m, uint32_t ssrc, uint16_t seq, uint32_t ts, const uint8_t *payload,
                  int len, double now, int level);
/* One tick: out (DP_PCM samples) gets the mix; returns the number of sources (0 = silent,
 * out is zeros). sources (may be NULL) receives up to 16 SSRCs. */
int dp_mixer_mix(dp_mixer *m, double now, int16_t *out, uint32_t *sources);
void dp_mixer_remove(dp_mixer *m, uint32_t ssrc);
int dp_mixer_add_type(PyObject *module);
PyObject *dp_pcm_array(const int16_t *pcm, int n);
/* mix(now) for the Python side: a mixer.MixedFrame. */
struct DpPlayoutObject_s;
extern PyTypeObject DpPlayoutType;
typedef struct {
    PyObject_HEAD
    dp_mixer *mixer;
    int codec;
} DpPlayoutObject;
PyObject *dp_playout_mix_object(DpPlayoutObject *self, double now);

#endif
