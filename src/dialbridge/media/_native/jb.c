/* Jitter buffer: a port of media/jitter.py to C, rule for rule (see that module's docstring
 * for the theory of operation; the comments here name the Python method each piece mirrors).
 *
 * Playout is indexed by the extended RTP timestamp (RFC 3550 §5.1), kept as int64. Buffered
 * packets live in a fixed-capacity array sorted by extended timestamp (JB_CAPACITY entries);
 * their payloads are copied into a pool of DP_MAX_PAYLOAD-byte slots allocated once in
 * dp_jb_new and reused last-in first-out, so the pages a steady stream touches stay few. No
 * allocation happens per packet.
 *
 * Differences from jitter.py, all on inputs jitter.py cannot take or that never occur in a
 * working call (tests/media/test_jitter_native.py compares the two frame by frame):
 *   - a payload longer than DP_MAX_PAYLOAD is dropped and counted as `empty`, before the
 *     SSRC/timestamp checks (jitter.py queues it);
 *   - a packet that finds the buffer full (JB_CAPACITY packets queued) is dropped and counted
 *     as `late` (jitter.py's dict has no bound);
 *   - a decoder result of more than DP_MAX_PCM samples (or < 0) is a corrupt payload:
 *     concealed as when decode() raises;
 *   - a non-finite `now` leaves the jitter estimate alone (jitter.py turns it into NaN and
 *     then raises in target_frames); depths are clamped instead of overflowing;
 *   - a pop always yields exactly pcm_samples samples (jitter.py can return fewer only when
 *     frame_samples / pcm_samples is not an integer);
 *   - silence of negative length (reachable only after playout skipped packets, see
 *     WHOLE_CAP) is empty instead of raising ValueError; a pop gives up assembling after
 *     JB_MAX_PIECES pieces (a hang guard: jitter.py never needs that many).
 *
 * Python type: _dataplane.JitterBuffer (bottom of this file) has jitter.JitterBuffer's API;
 * its decoder is any Python object with decode()/conceal(). `stats` is a new JitterStats
 * snapshot on each access (jitter.py's is the live object). dp_jb_from_object() gives C code
 * the dp_jb of such an object.
 */
#include "dataplane.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TICK 0.020
#define ADAPT_WINDOW 50
#define RESYNC_FRAMES 100
#define LATE_RUN_REANCHOR 3
#define MAX_ADJUST_WAIT 50
#define QUIET_PEAK 600
#define JB_CAPACITY 256
#define JB_MAX_PIECES 100000
#define JB_MAX_FRAMES 100000 /* clamp for min/max depth in frames */
#define KIND_NONE (-1)
/* Samples one pop may assemble. In a working stream that is at most a carry plus one packet
 * (2 * DP_MAX_PCM); a confused sender (overlapping timestamps) can make one pop replay every
 * buffered packet, so the buffer is sized for that too. It is malloc'ed untouched: only the
 * pages actually written are ever committed. */
#define WHOLE_CAP ((2 * JB_CAPACITY + 8) * DP_MAX_PCM)

typedef struct {
    int64_t ext;
    int level;
    int len;
    uint16_t seq;
    uint16_t slot;
} jb_entry;

typedef struct {
    int kind;
    int has_pcm; /* jitter.py's pcm is not None */
    int64_t units;
    int level;
    int n; /* samples of this piece in jb->whole (when has_pcm) */
} jb_piece;

struct dp_jb {
    dp_decoder *decoder;
    int clock_rate;
    int64_t spf;
    int64_t units_per_sample;
    int pcm_samples;
    int min_frames, max_frames;
    int max_plc_frames;
    int64_t resync_ahead, resync_behind;
    dp_jb_stats stats;
    int has_ssrc;
    uint32_t ssrc;
    int has_last_arrival;
    double last_arrival;

    /* timeline (jitter.py _reset_timeline) */
    jb_entry entries[JB_CAPACITY]; /* sorted by ext, ascending */
    int n;
    uint16_t free_slots[JB_CAPACITY];
    int n_free;
    uint8_t *pool; /* JB_CAPACITY * DP_MAX_PAYLOAD */
    int has_last_raw;
    uint32_t last_raw_ts;
    int64_t last_ext_ts;
    int has_playout;
    int64_t playout;
    double first_arrival;
    int has_last_played_seq;
    uint16_t last_played_seq;
    int plc_run;
    int has_prev_transit;
    double prev_transit;
    int window_pops;
    int has_window_margin;
    int64_t window_margin;
    int pending;
    int late_run;
    int pending_age;
    int last_kind; /* KIND_NONE when _last_frame is None */
    int last_has_pcm;
    int16_t *last_pcm; /* pcm_samples */
    int64_t carry_units;
    int carry_has_pcm;
    int carry_n; /* samples carried, at the start of whole */
    int carry_level;

    int16_t *whole; /* wcap samples: decoded audio of the pieces of one pop + the carry */
    int wcap;
};

/* ---- helpers ---------------------------------------------------------------------------- */

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q -= 1;
    return q;
}

static int clamp_frames(double x)
{
    if (!(x > -JB_MAX_FRAMES))
        return -JB_MAX_FRAMES;
    if (!(x < JB_MAX_FRAMES))
        return JB_MAX_FRAMES;
    return (int)x;
}

static int seq_diff(uint16_t a, uint16_t b)
{
    return (int)(int16_t)(uint16_t)(a - b);
}

static int find_index(const dp_jb *jb, int64_t ext)
{
    int lo = 0, hi = jb->n;
    if (hi > 0 && jb->entries[0].ext == ext)
        return 0;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (jb->entries[mid].ext < ext)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < jb->n && jb->entries[lo].ext == ext) ? lo : -1;
}

static const uint8_t *slot_data(const dp_jb *jb, int slot)
{
    return jb->pool + (size_t)slot * DP_MAX_PAYLOAD;
}

/* Removes entries[i] from the sorted array; its payload slot stays valid until released. */
static jb_entry take_entry(dp_jb *jb, int i)
{
    jb_entry e = jb->entries[i];
    memmove(&jb->entries[i], &jb->entries[i + 1], (size_t)(jb->n - i - 1) * sizeof(jb_entry));
    jb->n--;
    return e;
}

static void release_slot(dp_jb *jb, int slot)
{
    jb->free_slots[jb->n_free++] = (uint16_t)slot;
}

static void reset_timeline(dp_jb *jb)
{
    int i;
    jb->n = 0;
    jb->n_free = JB_CAPACITY;
    for (i = 0; i < JB_CAPACITY; i++) /* LIFO: slot 0 is handed out first */
        jb->free_slots[i] = (uint16_t)(JB_CAPACITY - 1 - i);
    jb->has_last_raw = 0;
    jb->last_raw_ts = 0;
    jb->last_ext_ts = 0;
    jb->has_playout = 0;
    jb->playout = 0;
    jb->first_arrival = 0.0;
    jb->has_last_played_seq = 0;
    jb->last_played_seq = 0;
    jb->plc_run = 0;
    jb->has_prev_transit = 0;
    jb->prev_transit = 0.0;
    jb->window_pops = 0;
    jb->has_window_margin = 0;
    jb->window_margin = 0;
    jb->pending = 0;
    jb->late_run = 0;
    jb->pending_age = 0;
    jb->last_kind = KIND_NONE;
    jb->last_has_pcm = 0;
    jb->carry_units = 0;
    jb->carry_has_pcm = 0;
    jb->carry_n = 0;
    jb->carry_level = DP_SILENCE_LEVEL;
}

/* ---- construction ----------------------------------------------------------------------- */

dp_jb *dp_jb_new(dp_decoder *decoder, int clock_rate, int frame_samples, int pcm_samples,
                 double min_delay, double max_delay, int max_plc_frames)
{
    dp_jb *jb;
    double q;
    if (decoder == NULL || clock_rate <= 0 || frame_samples <= 0 || pcm_samples <= 0 ||
        pcm_samples > DP_MAX_PCM || isnan(min_delay) || isnan(max_delay))
        return NULL;
    jb = calloc(1, sizeof(dp_jb));
    if (jb == NULL)
        return NULL;
    jb->wcap = WHOLE_CAP + 2 * pcm_samples;
    jb->pool = malloc((size_t)JB_CAPACITY * DP_MAX_PAYLOAD);
    jb->whole = malloc((size_t)jb->wcap * sizeof(int16_t));
    jb->last_pcm = calloc((size_t)pcm_samples, sizeof(int16_t));
    if (jb->pool == NULL || jb->whole == NULL || jb->last_pcm == NULL) {
        free(jb->pool);
        free(jb->whole);
        free(jb->last_pcm);
        free(jb);
        return NULL;
    }
    jb->decoder = decoder;
    jb->clock_rate = clock_rate;
    jb->spf = frame_samples;
    jb->units_per_sample = frame_samples / pcm_samples > 1 ? frame_samples / pcm_samples : 1;
    jb->pcm_samples = pcm_samples;
    /* Python's round() rounds half to even, as nearbyint does in the default mode. */
    q = nearbyint(min_delay / TICK);
    jb->min_frames = clamp_frames(q) > 1 ? clamp_frames(q) : 1;
    q = nearbyint(max_delay / TICK);
    jb->max_frames = clamp_frames(q) > jb->min_frames ? clamp_frames(q) : jb->min_frames;
    jb->max_plc_frames = max_plc_frames;
    jb->resync_ahead = (int64_t)(RESYNC_FRAMES + jb->max_frames + 1) * frame_samples;
    jb->resync_behind = -(int64_t)(RESYNC_FRAMES + 1) * frame_samples;
    reset_timeline(jb);
    return jb;
}

void dp_jb_free(dp_jb *jb)
{
    if (jb == NULL)
        return;
    if (jb->decoder != NULL && jb->decoder->destroy != NULL)
        jb->decoder->destroy(jb->decoder);
    free(jb->pool);
    free(jb->whole);
    free(jb->last_pcm);
    free(jb);
}

/* Forget the stream and its timeline, as SingleStreamPlayout.remove does in Python
 * (`ssrc = None; _reset_timeline()`); with forget_ssrc == 0 only the timeline restarts. */
void dp_jb_reset(dp_jb *jb, int forget_ssrc)
{
    if (forget_ssrc)
        jb->has_ssrc = 0;
    reset_timeline(jb);
}

/* ---- accessors -------------------------------------------------------------------------- */

const dp_jb_stats *dp_jb_get_stats(const dp_jb *jb) { return &jb->stats; }

int dp_jb_target_frames(const dp_jb *jb)
{
    /* 1 frame plus three jitter deviations, clamped to [min_frames, max_frames]. */
    double extra = ceil(3.0 * jb->stats.jitter / (double)jb->spf);
    int t;
    if (!(extra < (double)jb->max_frames)) /* also NaN */
        return jb->max_frames;
    t = 1 + (int)extra;
    if (t < jb->min_frames)
        t = jb->min_frames;
    if (t > jb->max_frames)
        t = jb->max_frames;
    return t;
}

int dp_jb_playing(const dp_jb *jb) { return jb->has_playout; }

int dp_jb_ssrc(const dp_jb *jb, uint32_t *ssrc)
{
    if (!jb->has_ssrc)
        return 0;
    if (ssrc != NULL)
        *ssrc = jb->ssrc;
    return 1;
}

double dp_jb_last_arrival(const dp_jb *jb) { return jb->has_last_arrival ? jb->last_arrival : -1.0; }

/* ---- input (push_payload) --------------------------------------------------------------- */

int dp_jb_push(dp_jb *jb, uint32_t ssrc, uint16_t seq, uint32_t ts, const uint8_t *payload,
               int len, double now, int level)
{
    dp_jb_stats *stats = &jb->stats;
    int64_t ext;
    int last_raw_known, playing, i, lo, hi, slot;
    if (len <= 0 || payload == NULL || len > DP_MAX_PAYLOAD) {
        /* Jigasi's hole punch packets carry no payload (jigasi-protocol §1.5). */
        stats->empty++;
        return 0;
    }
    if (!jb->has_ssrc || ssrc != jb->ssrc) {
        if (jb->has_ssrc)
            stats->resyncs++;
        jb->has_ssrc = 1;
        jb->ssrc = ssrc;
        reset_timeline(jb);
    }
    last_raw_known = jb->has_last_raw;
    if (!last_raw_known)
        ext = ts;
    else /* extend the 32-bit timestamp around the newest one seen (wrap-around) */
        ext = jb->last_ext_ts + (int64_t)(int32_t)(uint32_t)(ts - jb->last_raw_ts);
    playing = jb->has_playout;
    if (playing) {
        int64_t ahead = ext - jb->playout;
        if (ahead > jb->resync_ahead || ahead < jb->resync_behind) {
            stats->resyncs++;
            reset_timeline(jb);
            ext = ts;
            playing = 0;
            last_raw_known = 0;
        }
    }
    jb->last_arrival = now;
    jb->has_last_arrival = 1;
    stats->received++;
    {
        /* RFC 3550 §6.4.1 / A.8: J += (|D(i-1,i)| - J) / 16, in timestamp units. */
        double transit = now * (double)jb->clock_rate - (double)ext;
        if (jb->has_prev_transit) {
            double d = transit - jb->prev_transit;
            if (isfinite(d))
                stats->jitter += ((d >= 0 ? d : -d) - stats->jitter) * 0.0625;
        }
        jb->prev_transit = transit;
        jb->has_prev_transit = 1;
    }
    if (!last_raw_known || ext > jb->last_ext_ts) {
        jb->last_raw_ts = ts;
        jb->last_ext_ts = ext;
        jb->has_last_raw = 1;
    }

    if (!playing) {
        if (jb->n == 0)
            jb->first_arrival = now;
    } else {
        int64_t ahead = ext - jb->playout; /* margin in RTP units */
        if (!jb->has_window_margin || ahead < jb->window_margin) {
            jb->window_margin = ahead;
            jb->has_window_margin = 1;
        }
        if (ahead < 0) {
            stats->late++;
            jb->late_run++;
            if (jb->late_run < LATE_RUN_REANCHOR)
                return 0;
            /* The stream as a whole is behind playout (a slow sender clock, a delay step):
             * move playout back so this packet plays after target-1 frames of margin. */
            jb->playout = ext - (int64_t)(dp_jb_target_frames(jb) - 1) * jb->spf;
            jb->late_run = 0;
            stats->reanchors++;
        } else {
            jb->late_run = 0;
        }
    }
    /* Insert, keeping entries sorted by ext (the newest packet usually goes last). */
    lo = 0;
    hi = jb->n;
    if (hi > 0 && jb->entries[hi - 1].ext < ext) {
        lo = hi;
    } else {
        while (lo < hi) {
            int mid = (lo + hi) >> 1;
            if (jb->entries[mid].ext < ext)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < jb->n && jb->entries[lo].ext == ext) {
            stats->duplicates++;
            return 0;
        }
    }
    if (jb->n >= JB_CAPACITY || jb->n_free == 0) {
        stats->late++; /* full: no room for it (see the top of this file) */
        return 0;
    }
    slot = jb->free_slots[--jb->n_free];
    memcpy(jb->pool + (size_t)slot * DP_MAX_PAYLOAD, payload, (size_t)len);
    i = lo;
    memmove(&jb->entries[i + 1], &jb->entries[i], (size_t)(jb->n - i) * sizeof(jb_entry));
    jb->entries[i].ext = ext;
    jb->entries[i].level = level;
    jb->entries[i].len = len;
    jb->entries[i].seq = seq;
    jb->entries[i].slot = (uint16_t)slot;
    jb->n++;
    return 1;
}

/* ---- output ----------------------------------------------------------------------------- */

static int start(dp_jb *jb, double now)
{
    if (jb->n == 0)
        return 0;
    /* Hold the first packet for target-1 ticks so the next ones have time to arrive. */
    if (now - jb->first_arrival < (double)(dp_jb_target_frames(jb) - 1) * TICK - 1e-6)
        return 0;
    jb->playout = jb->entries[0].ext;
    jb->has_playout = 1;
    jb->window_pops = 0;
    jb->has_window_margin = 0;
    return 1;
}

int dp_jb_peek_level(dp_jb *jb, double now)
{
    int i;
    if (!jb->has_playout && !start(jb, now))
        return DP_SILENCE_LEVEL;
    i = find_index(jb, jb->playout);
    return i < 0 ? DP_SILENCE_LEVEL : jb->entries[i].level;
}

static void adapt(dp_jb *jb)
{
    double margin;
    int target;
    int has = jb->has_window_margin;
    int64_t m = jb->window_margin;
    jb->window_pops = 0;
    jb->has_window_margin = 0;
    if (!has) /* nothing arrived in the window (DTX, silence): nothing to learn */
        return;
    margin = (double)m / (double)jb->spf; /* frames */
    target = dp_jb_target_frames(jb);
    /* Grow only when a packet came too late, by as much as it was late; shrink by one frame
     * when even the latest packet had two frames to spare. */
    if (margin < 0) {
        double late = ceil(-margin);
        jb->pending = late < (double)jb->max_frames ? -(int)late : -jb->max_frames;
    } else if (margin >= (double)(target + 1)) {
        jb->pending = 1;
    }
}

/* Samples of `units` RTP units (floor division, as `units // _units_per_sample`). */
static int samples_of(const dp_jb *jb, int64_t units)
{
    int64_t n = floordiv(units, jb->units_per_sample);
    return n < 0 ? 0 : (n > jb->wcap ? jb->wcap : (int)n);
}

static int room(const dp_jb *jb, int at) { return at >= jb->wcap ? 0 : jb->wcap - at; }

static void zeros_at(dp_jb *jb, int at, int n)
{
    if (n > room(jb, at))
        n = room(jb, at);
    if (n > 0)
        memset(jb->whole + at, 0, (size_t)n * sizeof(int16_t));
}

/* decoder.conceal(next) fitted to n samples (_fit) at whole[at]; returns the samples kept.
 * A negative n (a piece of negative length) keeps what numpy's pcm[:n] keeps. */
static int conceal_fit(dp_jb *jb, const uint8_t *next, int next_len, int at, int64_t n)
{
    int got, max = room(jb, at), keep;
    int16_t *out = jb->whole + (at < jb->wcap ? at : 0);
    if (n >= 0 && n < max)
        max = (int)n;
    if (n < 0 && max > DP_MAX_PCM)
        max = DP_MAX_PCM;
    /* called even when nothing is kept: the codec's state advances as in jitter.py */
    got = jb->decoder->conceal(jb->decoder, next, next_len, out, max);
    if (got < 0)
        got = 0;
    if (got > max)
        got = max;
    if (n < 0) {
        keep = got + n > 0 ? (int)(got + n) : 0;
        return keep;
    }
    if (got < max)
        memset(out + got, 0, (size_t)(max - got) * sizeof(int16_t));
    return max;
}

/* _decode: the payload's audio at whole[at], or concealment fitted to one frame when the
 * payload is corrupt. Returns the number of samples. */
static int decode_at(dp_jb *jb, const uint8_t *payload, int len, int at)
{
    int got = -1;
    int max = room(jb, at) < DP_MAX_PCM ? room(jb, at) : DP_MAX_PCM;
    if (max > 0)
        got = jb->decoder->decode(jb->decoder, payload, len, jb->whole + at, max);
    if (got >= 0 && got <= max)
        return got;
    /* a corrupt payload is a remote error: conceal it, keep playing */
    return conceal_fit(jb, NULL, 0, at, samples_of(jb, jb->spf));
}

static int silence_at(dp_jb *jb, int64_t units, int at)
{
    int n = units == jb->spf ? jb->pcm_samples : samples_of(jb, units);
    if (n > room(jb, at))
        n = room(jb, at);
    zeros_at(jb, at, n);
    return n;
}

static jb_piece conceal_or_silence(dp_jb *jb, int decode, const uint8_t *next, int next_len,
                                   int64_t units, int at)
{
    jb_piece p = {DP_SILENCE, 0, units, DP_SILENCE_LEVEL, 0};
    if (jb->plc_run < jb->max_plc_frames && jb->has_last_played_seq) {
        jb->plc_run++;
        jb->stats.concealed++;
        p.kind = DP_PLC;
        if (decode) {
            p.has_pcm = 1;
            int64_t n = floordiv(units, jb->units_per_sample);
            p.n = conceal_fit(jb, next, next_len, at, n < -jb->wcap ? -jb->wcap : n);
        }
        return p;
    }
    jb->stats.silent++;
    if (decode) {
        p.has_pcm = 1;
        p.n = silence_at(jb, units, at);
    }
    return p;
}

/* _units_after: duration of the packet at ts (already taken) without decoding it: up to the
 * next buffered packet (entries are sorted, so entries[0]). */
static int64_t units_after(const dp_jb *jb, int64_t ts)
{
    int64_t gap;
    if (jb->n == 0)
        return jb->spf;
    gap = jb->entries[0].ext - ts;
    return (gap > 0 && gap <= 6 * jb->spf) ? gap : jb->spf;
}

/* _next_piece: consume the packet at the playout point or conceal its absence, writing the
 * audio (when decoding) at whole[at]; advances playout. */
static jb_piece next_piece(dp_jb *jb, int decode, int at)
{
    int64_t ts = jb->playout;
    int64_t units = jb->spf;
    int i = find_index(jb, ts);
    const jb_entry *following;
    const uint8_t *fpayload = NULL;
    int flen = 0, fi;
    if (i >= 0) {
        jb_entry e = take_entry(jb, i);
        jb_piece p = {DP_AUDIO, 0, 0, e.level, 0};
        jb->last_played_seq = e.seq;
        jb->has_last_played_seq = 1;
        jb->plc_run = 0;
        jb->stats.played++;
        if (decode) {
            p.has_pcm = 1;
            p.n = decode_at(jb, slot_data(jb, e.slot), e.len, at);
            p.units = (int64_t)p.n * jb->units_per_sample;
        } else {
            p.units = units_after(jb, ts);
        }
        release_slot(jb, e.slot);
        jb->playout = ts + p.units;
        return p;
    }
    fi = find_index(jb, ts + jb->spf);
    following = fi >= 0 ? &jb->entries[fi] : NULL;
    if (following == NULL && jb->n > 0) {
        int64_t lowest = jb->entries[0].ext;
        if (lowest - ts < jb->spf) /* the next packet starts inside this gap (odd ptime) */
            units = lowest - ts;
        following = &jb->entries[0];
        if (lowest - ts != units && lowest - ts != jb->spf) {
            fpayload = NULL;
        } else {
            fpayload = slot_data(jb, following->slot);
            flen = following->len;
        }
    } else if (following != NULL) {
        fpayload = slot_data(jb, following->slot);
        flen = following->len;
    }
    jb->playout = ts + units;
    if (following != NULL && jb->has_last_played_seq &&
        seq_diff(following->seq, jb->last_played_seq) == 1) {
        /* Timestamps moved on but no sequence number is missing: DTX/CN gap. */
        jb_piece p = {DP_SILENCE, 0, units, DP_SILENCE_LEVEL, 0};
        jb->plc_run = 0;
        jb->stats.silent++;
        if (decode) {
            p.has_pcm = 1;
            p.n = silence_at(jb, units, at);
        }
        return p;
    }
    return conceal_or_silence(jb, decode, fpayload, flen, units, at);
}

static int peak_is_quiet(const dp_jb *jb)
{
    /* int(np.abs(pcm).max()) < QUIET_PEAK on int16 audio: abs(-32768) stays -32768. */
    int i, peak = -32768;
    for (i = 0; i < jb->pcm_samples; i++) {
        int s = jb->last_pcm[i];
        int a = s < 0 ? (int)(int16_t)(uint16_t)(-s) : s;
        if (a > peak)
            peak = a;
    }
    return peak < QUIET_PEAK;
}

/* _adjust_now: drop or insert only after a quiet frame (a time warp is not heard there). */
static int adjust_now(dp_jb *jb, int decode)
{
    jb->pending_age++;
    if (!decode || jb->pending_age > MAX_ADJUST_WAIT || jb->last_kind != DP_AUDIO ||
        !jb->last_has_pcm || peak_is_quiet(jb)) {
        jb->pending_age = 0;
        return 1;
    }
    return 0;
}

/* Sets _last_frame; with decode, copies pcm_samples of whole[0..n] (zero-padded) to out. */
static int emit(dp_jb *jb, int kind, int decode, int n, int level, int16_t *pcm, int *levelp)
{
    jb->last_kind = kind;
    jb->last_has_pcm = decode;
    if (decode) {
        int k = n < jb->pcm_samples ? n : jb->pcm_samples;
        if (k < 0)
            k = 0;
        memcpy(jb->last_pcm, jb->whole, (size_t)k * sizeof(int16_t));
        if (k < jb->pcm_samples)
            memset(jb->last_pcm + k, 0, (size_t)(jb->pcm_samples - k) * sizeof(int16_t));
        if (pcm != NULL)
            memcpy(pcm, jb->last_pcm, (size_t)jb->pcm_samples * sizeof(int16_t));
    }
    if (levelp != NULL)
        *levelp = level;
    return kind;
}

/* _assemble: packets that are not 20 ms long are cut into 20 ms frames, the rest carried.
 * `first` is the first piece, its audio already in whole[0..wn]. Pieces are folded in as
 * they come (kind, first AUDIO level, duration), so their number needs no bound; the loop
 * guard only matters for decoders whose output contradicts the timestamps. */
static int assemble(dp_jb *jb, jb_piece first, int wn, int decode, int16_t *pcm, int *levelp)
{
    int64_t have = first.units;
    int kind, n = jb->pcm_samples, guard = 0;
    int has_plc = first.kind == DP_PLC, has_audio = first.kind == DP_AUDIO;
    int level = has_audio ? first.level : DP_SILENCE_LEVEL;
    while (have < jb->spf) {
        jb_piece p;
        if (++guard > JB_MAX_PIECES) {
            have = jb->spf;
            break;
        }
        p = next_piece(jb, decode, wn);
        if (decode)
            wn += p.n;
        have += p.units;
        if (p.kind == DP_PLC) {
            has_plc = 1;
        } else if (p.kind == DP_AUDIO && !has_audio) {
            has_audio = 1;
            level = p.level;
        }
    }
    kind = has_plc ? DP_PLC : has_audio ? DP_AUDIO : DP_SILENCE;
    emit(jb, kind, decode, wn, level, pcm, levelp);
    if (decode && wn > n) {
        memmove(jb->whole, jb->whole + n, (size_t)(wn - n) * sizeof(int16_t));
        jb->carry_n = wn - n;
        jb->carry_has_pcm = 1;
    } else {
        jb->carry_n = 0;
        jb->carry_has_pcm = 0;
    }
    jb->carry_units = have - jb->spf;
    jb->carry_level = level;
    return kind;
}

int dp_jb_pop(dp_jb *jb, double now, int decode, int16_t *pcm, int *level)
{
    jb_piece pieces[1];
    decode = decode != 0;
    /* Fast path, by far the most common tick: playing, nothing to adjust, no partial packet
     * carried over, and the packet for this slot is here. */
    if (jb->has_playout && !jb->pending && !jb->carry_units &&
        jb->window_pops < ADAPT_WINDOW - 1) {
        int64_t ts = jb->playout;
        int i = find_index(jb, ts);
        if (i >= 0) {
            int64_t spf = jb->spf;
            if (!decode) {
                /* after taking it: nothing else buffered, or the next one is 20 ms on
                 * (entries are sorted: the lowest left is entries[1] if this is entries[0]) */
                if (jb->n == 1 || jb->entries[i == 0 ? 1 : 0].ext == ts + spf) {
                    jb_entry e = take_entry(jb, i);
                    release_slot(jb, e.slot);
                    jb->window_pops++;
                    jb->playout = ts + spf;
                    jb->last_played_seq = e.seq;
                    jb->has_last_played_seq = 1;
                    jb->plc_run = 0;
                    jb->stats.played++;
                    return emit(jb, DP_AUDIO, 0, 0, DP_SILENCE_LEVEL, pcm, level);
                }
                /* odd duration without decoding: general path below */
            } else {
                jb_entry e = take_entry(jb, i);
                int got = decode_at(jb, slot_data(jb, e.slot), e.len, 0);
                release_slot(jb, e.slot);
                jb->window_pops++;
                jb->last_played_seq = e.seq;
                jb->has_last_played_seq = 1;
                jb->plc_run = 0;
                jb->stats.played++;
                if (got == jb->pcm_samples) {
                    jb->playout = ts + spf;
                    return emit(jb, DP_AUDIO, 1, got, e.level, pcm, level);
                }
                /* Not a 20 ms packet: hand the decoded audio to the general path. */
                jb->playout = ts + (int64_t)got * jb->units_per_sample;
                {
                    jb_piece p = {DP_AUDIO, 1, (int64_t)got * jb->units_per_sample, e.level, got};
                    return assemble(jb, p, got, 1, pcm, level);
                }
            }
        }
    }

    if (!jb->has_playout && !start(jb, now)) {
        jb->stats.silent++;
        if (decode && pcm != NULL)
            memset(pcm, 0, (size_t)jb->pcm_samples * sizeof(int16_t));
        if (level != NULL)
            *level = DP_SILENCE_LEVEL;
        return DP_SILENCE;
    }

    jb->window_pops++;
    if (jb->window_pops >= ADAPT_WINDOW)
        adapt(jb);

    if (jb->pending && !jb->carry_units && adjust_now(jb, decode)) {
        int64_t ts;
        int i;
        if (jb->pending < 0) { /* insert: conceal once without advancing playout */
            jb_piece p;
            jb->pending++;
            jb->stats.inserted_for_depth++;
            p = conceal_or_silence(jb, decode, NULL, 0, jb->spf, 0);
            return emit(jb, p.kind, decode, p.n, DP_SILENCE_LEVEL, pcm, level);
        }
        jb->pending = 0; /* drop: skip one packet of the timeline */
        jb->stats.dropped_for_depth++;
        ts = jb->playout;
        i = find_index(jb, ts);
        if (i >= 0) {
            jb_entry e = take_entry(jb, i);
            release_slot(jb, e.slot);
            jb->last_played_seq = e.seq;
            jb->has_last_played_seq = 1;
        }
        jb->playout = ts + units_after(jb, ts);
    }

    if (!jb->carry_units) {
        pieces[0] = next_piece(jb, decode, 0);
        if (pieces[0].units == jb->spf) {
            if (!decode) /* not decoded (the mixer left this stream out) */
                return emit(jb, pieces[0].kind, 0, 0, DP_SILENCE_LEVEL, pcm, level);
            if (pieces[0].n == jb->pcm_samples) /* the common 20 ms packet */
                return emit(jb, pieces[0].kind, 1, pieces[0].n, pieces[0].level, pcm, level);
        }
        return assemble(jb, pieces[0], decode ? pieces[0].n : 0, decode, pcm, level);
    }
    pieces[0].kind = DP_AUDIO;
    pieces[0].units = jb->carry_units;
    pieces[0].level = jb->carry_level;
    pieces[0].has_pcm = decode;
    pieces[0].n = 0;
    if (decode) {
        if (jb->carry_has_pcm) {
            pieces[0].n = jb->carry_n;
        } else {
            pieces[0].n = samples_of(jb, jb->carry_units);
            zeros_at(jb, 0, pieces[0].n);
        }
    }
    return assemble(jb, pieces[0], pieces[0].n, decode, pcm, level);
}

/* ====================================================================================== */
/* Python type _dataplane.JitterBuffer: same API as jitter.JitterBuffer (for tests, and for
 * callers that want the C buffer behind the Python interface). */

typedef struct {
    dp_decoder base;
    PyObject *obj; /* the Python decoder (owned) */
    int failed;    /* an exception that jitter.py would not catch is pending */
} py_decoder;

typedef struct {
    PyObject_HEAD
    dp_jb *jb;
    py_decoder *dec; /* owned by jb */
    PyObject *silence; /* shared zeros array, as jitter.py's _silence */
} DpJitterBufferObject;

/* imported once from dialbridge.media.jitter and numpy */
static PyObject *Frame_type, *Stats_type, *Kinds[3], *np_empty, *np_int16, *np_asarray;
static PyObject *s_decode, *s_conceal, *s_ssrc, *s_sequence_number, *s_timestamp, *s_payload,
    *s_level;

static int import_deps(void)
{
    PyObject *jitter, *kind_cls, *np;
    static const char *names[3] = {"AUDIO", "PLC", "SILENCE"};
    int i;
    if (Frame_type != NULL)
        return 0;
    jitter = PyImport_ImportModule("dialbridge.media.jitter");
    if (jitter == NULL)
        return -1;
    np = PyImport_ImportModule("numpy");
    if (np == NULL) {
        Py_DECREF(jitter);
        return -1;
    }
    kind_cls = PyObject_GetAttrString(jitter, "FrameKind");
    Stats_type = PyObject_GetAttrString(jitter, "JitterStats");
    np_empty = PyObject_GetAttrString(np, "empty");
    np_int16 = PyObject_GetAttrString(np, "int16");
    np_asarray = PyObject_GetAttrString(np, "asarray");
    for (i = 0; i < 3 && kind_cls != NULL; i++)
        Kinds[i] = PyObject_GetAttrString(kind_cls, names[i]);
    Frame_type = PyObject_GetAttrString(jitter, "Frame");
    Py_XDECREF(kind_cls);
    Py_DECREF(jitter);
    Py_DECREF(np);
    if (Frame_type == NULL || Stats_type == NULL || np_empty == NULL || np_int16 == NULL ||
        np_asarray == NULL || Kinds[0] == NULL || Kinds[1] == NULL || Kinds[2] == NULL) {
        Py_CLEAR(Frame_type);
        return -1;
    }
    return 0;
}

/* Copies up to max int16 samples of a decoder result into out; returns the total number of
 * samples the result holds (may exceed max), or -1 with an exception set. */
static Py_ssize_t pcm_from(PyObject *res, int16_t *out, int max)
{
    Py_buffer view;
    Py_ssize_t n;
    PyObject *arr = NULL;
    int ok = 0;
    if (PyObject_GetBuffer(res, &view, PyBUF_FORMAT | PyBUF_ANY_CONTIGUOUS) == 0) {
        const char *f = view.format;
        size_t fl = f == NULL ? 0 : strlen(f);
        ok = view.itemsize == 2 && fl > 0 && f[fl - 1] == 'h' &&
             (fl == 1 || (fl == 2 && strchr("@=<", f[0]) != NULL));
        if (!ok)
            PyBuffer_Release(&view);
    } else {
        PyErr_Clear();
    }
    if (!ok) { /* not int16 audio: convert as numpy would (np.asarray(res, np.int16)) */
        arr = PyObject_CallFunctionObjArgs(np_asarray, res, np_int16, NULL);
        if (arr == NULL)
            return -1;
        if (PyObject_GetBuffer(arr, &view, PyBUF_ANY_CONTIGUOUS) < 0) {
            Py_DECREF(arr);
            return -1;
        }
    }
    n = view.len / 2;
    memcpy(out, view.buf, (size_t)(n < max ? n : max) * sizeof(int16_t));
    PyBuffer_Release(&view);
    Py_XDECREF(arr);
    return n;
}

static int pydec_decode(dp_decoder *self, const uint8_t *payload, int len, int16_t *out,
                        int max)
{
    py_decoder *d = (py_decoder *)self;
    PyObject *bytes, *res, *args[2];
    Py_ssize_t n;
    if (d->failed || d->obj == NULL)
        return -1;
    bytes = PyBytes_FromStringAndSize((const char *)payload, len);
    if (bytes == NULL) {
        d->failed = 1;
        return -1;
    }
    args[0] = d->obj;
    args[1] = bytes;
    res = PyObject_VectorcallMethod(s_decode, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(bytes);
    if (res == NULL) {
        if (PyErr_ExceptionMatches(PyExc_Exception)) { /* a corrupt payload: conceal it */
            PyErr_Clear();
            return -1;
        }
        d->failed = 1;
        return -1;
    }
    n = pcm_from(res, out, max);
    Py_DECREF(res);
    if (n < 0) {
        d->failed = 1;
        return -1;
    }
    return n > max ? -1 : (int)n;
}

static int pydec_conceal(dp_decoder *self, const uint8_t *next, int next_len, int16_t *out,
                         int samples)
{
    py_decoder *d = (py_decoder *)self;
    PyObject *arg, *res, *args[2];
    Py_ssize_t n;
    if (d->failed || d->obj == NULL)
        return 0;
    if (next != NULL) {
        arg = PyBytes_FromStringAndSize((const char *)next, next_len);
        if (arg == NULL) {
            d->failed = 1;
            return 0;
        }
    } else {
        arg = Py_NewRef(Py_None);
    }
    args[0] = d->obj;
    args[1] = arg;
    res = PyObject_VectorcallMethod(s_conceal, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(arg);
    if (res == NULL) { /* jitter.py lets exceptions from conceal() propagate */
        d->failed = 1;
        return 0;
    }
    n = pcm_from(res, out, samples);
    Py_DECREF(res);
    if (n < 0) {
        d->failed = 1;
        return 0;
    }
    return n > samples ? samples : (int)n;
}

static void pydec_destroy(dp_decoder *self)
{
    py_decoder *d = (py_decoder *)self;
    Py_CLEAR(d->obj);
    PyMem_RawFree(d);
}

static PyObject *JB_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"decoder",   "clock_rate", "frame_samples",  "pcm_samples",
                             "min_delay", "max_delay",  "max_plc_frames", NULL};
    PyObject *decoder;
    int clock_rate = -1, frame_samples = -1, pcm_samples = DP_PCM, max_plc_frames = 5;
    double min_delay = 0.060, max_delay = 0.300;
    DpJitterBufferObject *self;
    PyObject *arg;
    if (import_deps() < 0)
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$iiiddi:JitterBuffer", kwlist, &decoder,
                                     &clock_rate, &frame_samples, &pcm_samples, &min_delay,
                                     &max_delay, &max_plc_frames))
        return NULL;
    if (clock_rate <= 0 || frame_samples <= 0) {
        PyErr_SetString(PyExc_TypeError,
                        "JitterBuffer needs clock_rate and frame_samples (positive ints)");
        return NULL;
    }
    if (pcm_samples <= 0 || pcm_samples > DP_MAX_PCM) {
        PyErr_Format(PyExc_ValueError, "pcm_samples must be in 1..%d", DP_MAX_PCM);
        return NULL;
    }
    if (isnan(min_delay) || isnan(max_delay)) {
        PyErr_SetString(PyExc_ValueError, "min_delay and max_delay must be numbers");
        return NULL;
    }
    self = (DpJitterBufferObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->dec = PyMem_RawCalloc(1, sizeof(py_decoder));
    if (self->dec == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->dec->base.decode = pydec_decode;
    self->dec->base.conceal = pydec_conceal;
    self->dec->base.destroy = pydec_destroy;
    self->dec->obj = Py_NewRef(decoder);
    self->jb = dp_jb_new(&self->dec->base, clock_rate, frame_samples, pcm_samples, min_delay,
                         max_delay, max_plc_frames);
    if (self->jb == NULL) {
        pydec_destroy(&self->dec->base);
        self->dec = NULL;
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    arg = PyLong_FromLong(pcm_samples);
    self->silence =
        arg == NULL ? NULL : PyObject_CallFunctionObjArgs(np_empty, arg, np_int16, NULL);
    Py_XDECREF(arg);
    if (self->silence == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    {
        Py_buffer view;
        if (PyObject_GetBuffer(self->silence, &view, PyBUF_WRITABLE | PyBUF_ANY_CONTIGUOUS) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        memset(view.buf, 0, (size_t)view.len);
        PyBuffer_Release(&view);
    }
    return (PyObject *)self;
}

static int JB_traverse(DpJitterBufferObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    if (self->dec != NULL)
        Py_VISIT(self->dec->obj);
    Py_VISIT(self->silence);
    return 0;
}

static int JB_clear(DpJitterBufferObject *self)
{
    if (self->dec != NULL)
        Py_CLEAR(self->dec->obj);
    Py_CLEAR(self->silence);
    return 0;
}

static void JB_dealloc(DpJitterBufferObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    JB_clear(self);
    if (self->jb != NULL)
        dp_jb_free(self->jb); /* destroys self->dec */
    self->jb = NULL;
    self->dec = NULL;
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Python int -> uint32 the way jitter.py uses it (ssrc and timestamps are 32-bit fields). */
static int as_u32(PyObject *o, uint32_t *out)
{
    unsigned long v = PyLong_AsUnsignedLongMask(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int as_level(PyObject *o, int *out)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT32_MIN || v > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "level out of range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

static PyObject *do_push(DpJitterBufferObject *self, PyObject *ssrc_o, PyObject *seq_o,
                         PyObject *ts_o, PyObject *payload_o, PyObject *now_o,
                         PyObject *level_o)
{
    uint32_t ssrc, seq, ts;
    int level = DP_SILENCE_LEVEL, r;
    double now;
    Py_buffer view;
    if (as_u32(ssrc_o, &ssrc) < 0 || as_u32(seq_o, &seq) < 0 || as_u32(ts_o, &ts) < 0)
        return NULL;
    if (level_o != NULL && as_level(level_o, &level) < 0)
        return NULL;
    now = PyFloat_AsDouble(now_o);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(payload_o, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    r = dp_jb_push(self->jb, ssrc, (uint16_t)seq, ts, view.buf,
                   view.len > INT32_MAX ? INT32_MAX : (int)view.len, now, level);
    PyBuffer_Release(&view);
    return PyBool_FromLong(r);
}

/* Parses (positional..., level=) for push/push_payload: npos required positionals. */
static int parse_level_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            int npos, PyObject **level_o, const char *name)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    *level_o = nargs > npos ? args[npos] : NULL;
    if (nargs < npos || nargs > npos + 1 || nkw > 1 || (nkw == 1 && nargs > npos)) {
        PyErr_Format(PyExc_TypeError, "%s() takes %d positional arguments and level=", name,
                     npos);
        return -1;
    }
    if (nkw == 1) {
        if (PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), s_level) != 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument", name);
            return -1;
        }
        *level_o = args[nargs];
    }
    return 0;
}

static PyObject *JB_push(DpJitterBufferObject *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    PyObject *level_o, *f[4], *res = NULL;
    PyObject *const names[4] = {s_ssrc, s_sequence_number, s_timestamp, s_payload};
    int i;
    if (parse_level_args(args, nargs, kwnames, 2, &level_o, "push") < 0)
        return NULL;
    for (i = 0; i < 4; i++) {
        f[i] = PyObject_GetAttr(args[0], names[i]);
        if (f[i] == NULL)
            goto done;
    }
    res = do_push(self, f[0], f[1], f[2], f[3], args[1], level_o);
done:
    while (--i >= 0)
        Py_DECREF(f[i]);
    return res;
}

static PyObject *JB_push_payload(DpJitterBufferObject *self, PyObject *const *args,
                                 Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *level_o;
    if (parse_level_args(args, nargs, kwnames, 5, &level_o, "push_payload") < 0)
        return NULL;
    return do_push(self, args[0], args[1], args[2], args[3], args[4], level_o);
}

static PyObject *make_frame(DpJitterBufferObject *self, int kind, int decode,
                            const int16_t *pcm, int level)
{
    PyObject *arr, *lev, *frame, *args[3];
    int pcm_samples = self->jb->pcm_samples;
    if (!decode) {
        arr = Py_NewRef(Py_None);
    } else if (kind == DP_SILENCE) {
        arr = Py_NewRef(self->silence);
    } else {
        Py_buffer view;
        PyObject *n = PyLong_FromLong(pcm_samples);
        if (n == NULL)
            return NULL;
        arr = PyObject_CallFunctionObjArgs(np_empty, n, np_int16, NULL);
        Py_DECREF(n);
        if (arr == NULL)
            return NULL;
        if (PyObject_GetBuffer(arr, &view, PyBUF_WRITABLE | PyBUF_ANY_CONTIGUOUS) < 0) {
            Py_DECREF(arr);
            return NULL;
        }
        memcpy(view.buf, pcm, (size_t)pcm_samples * sizeof(int16_t));
        PyBuffer_Release(&view);
    }
    lev = PyLong_FromLong(level);
    if (lev == NULL) {
        Py_DECREF(arr);
        return NULL;
    }
    args[0] = Kinds[kind];
    args[1] = arr;
    args[2] = lev;
    frame = PyObject_Vectorcall(Frame_type, args, 3, NULL);
    Py_DECREF(arr);
    Py_DECREF(lev);
    return frame;
}

static PyObject *JB_pop(DpJitterBufferObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    int16_t pcm[DP_MAX_PCM];
    double now;
    int decode = 1, level = DP_SILENCE_LEVEL, kind;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *decode_o = nargs > 1 ? args[1] : NULL;
    if (nargs < 1 || nargs > 2 || nkw > 1 || (nkw == 1 && nargs > 1)) {
        PyErr_SetString(PyExc_TypeError, "pop(now, decode=True)");
        return NULL;
    }
    if (nkw == 1) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "decode") != 0) {
            PyErr_SetString(PyExc_TypeError, "pop() got an unexpected keyword argument");
            return NULL;
        }
        decode_o = args[1];
    }
    now = PyFloat_AsDouble(args[0]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (decode_o != NULL && (decode = PyObject_IsTrue(decode_o)) < 0)
        return NULL;
    if (self->dec->obj == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "JitterBuffer was cleared");
        return NULL;
    }
    self->dec->failed = 0;
    kind = dp_jb_pop(self->jb, now, decode, pcm, &level);
    if (self->dec->failed) {
        self->dec->failed = 0;
        if (PyErr_Occurred())
            return NULL;
    }
    return make_frame(self, kind, decode, pcm, level);
}

static PyObject *JB_peek_level(DpJitterBufferObject *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(dp_jb_peek_level(self->jb, now));
}

static PyObject *JB_reset_timeline(DpJitterBufferObject *self, PyObject *unused)
{
    (void)unused;
    dp_jb_reset(self->jb, 0);
    Py_RETURN_NONE;
}

static PyObject *JB_get_stats(DpJitterBufferObject *self, void *closure)
{
    const dp_jb_stats *s = dp_jb_get_stats(self->jb);
    return PyObject_CallFunction(Stats_type, "KKKKKKKKKKKd", (unsigned long long)s->received,
                                 (unsigned long long)s->played,
                                 (unsigned long long)s->concealed,
                                 (unsigned long long)s->silent, (unsigned long long)s->late,
                                 (unsigned long long)s->duplicates,
                                 (unsigned long long)s->empty,
                                 (unsigned long long)s->dropped_for_depth,
                                 (unsigned long long)s->inserted_for_depth,
                                 (unsigned long long)s->resyncs,
                                 (unsigned long long)s->reanchors, s->jitter);
}

static PyObject *JB_get_ssrc(DpJitterBufferObject *self, void *closure)
{
    uint32_t ssrc;
    if (!dp_jb_ssrc(self->jb, &ssrc))
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(ssrc);
}

static int JB_set_ssrc(DpJitterBufferObject *self, PyObject *value, void *closure)
{
    uint32_t ssrc;
    if (value == NULL || value == Py_None) {
        self->jb->has_ssrc = 0;
        return 0;
    }
    if (as_u32(value, &ssrc) < 0)
        return -1;
    self->jb->has_ssrc = 1;
    self->jb->ssrc = ssrc;
    return 0;
}

static PyObject *JB_get_last_arrival(DpJitterBufferObject *self, void *closure)
{
    if (!self->jb->has_last_arrival)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->jb->last_arrival);
}

static PyObject *JB_get_playing(DpJitterBufferObject *self, void *closure)
{
    return PyBool_FromLong(dp_jb_playing(self->jb));
}

static PyObject *JB_get_target_frames(DpJitterBufferObject *self, void *closure)
{
    return PyLong_FromLong(dp_jb_target_frames(self->jb));
}

#define INT_GETTER(name, expr)                                                             \
    static PyObject *JB_get_##name(DpJitterBufferObject *self, void *closure)            \
    {                                                                                      \
        return PyLong_FromLongLong((long long)(expr));                                     \
    }
INT_GETTER(min_frames, self->jb->min_frames)
INT_GETTER(max_frames, self->jb->max_frames)
INT_GETTER(spf, self->jb->spf)
INT_GETTER(pcm_samples, self->jb->pcm_samples)
INT_GETTER(clock_rate, self->jb->clock_rate)
INT_GETTER(max_plc_frames, self->jb->max_plc_frames)

static PyObject *JB_get_decoder(DpJitterBufferObject *self, void *closure)
{
    if (self->dec == NULL || self->dec->obj == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->dec->obj);
}

static PyGetSetDef JB_getset[] = {
    {"stats", (getter)JB_get_stats, NULL, "JitterStats snapshot (a new object each time)"},
    {"ssrc", (getter)JB_get_ssrc, (setter)JB_set_ssrc, "SSRC in play, None before any"},
    {"last_arrival", (getter)JB_get_last_arrival, NULL, "arrival time of the last packet"},
    {"playing", (getter)JB_get_playing, NULL, NULL},
    {"target_frames", (getter)JB_get_target_frames, NULL, NULL},
    {"min_frames", (getter)JB_get_min_frames, NULL, NULL},
    {"max_frames", (getter)JB_get_max_frames, NULL, NULL},
    {"spf", (getter)JB_get_spf, NULL, NULL},
    {"pcm_samples", (getter)JB_get_pcm_samples, NULL, NULL},
    {"clock_rate", (getter)JB_get_clock_rate, NULL, NULL},
    {"max_plc_frames", (getter)JB_get_max_plc_frames, NULL, NULL},
    {"decoder", (getter)JB_get_decoder, NULL, NULL},
    {NULL},
};

static PyMethodDef JB_methods[] = {
    {"push", (PyCFunction)(void (*)(void))JB_push, METH_FASTCALL | METH_KEYWORDS,
     "push(packet, now, level=127) -> bool"},
    {"push_payload", (PyCFunction)(void (*)(void))JB_push_payload,
     METH_FASTCALL | METH_KEYWORDS, "push_payload(ssrc, seq, ts, payload, now, level=127)"},
    {"pop", (PyCFunction)(void (*)(void))JB_pop, METH_FASTCALL | METH_KEYWORDS,
     "pop(now, decode=True) -> jitter.Frame"},
    {"peek_level", (PyCFunction)JB_peek_level, METH_O, "peek_level(now) -> int"},
    {"_reset_timeline", (PyCFunction)JB_reset_timeline, METH_NOARGS,
     "restart the timeline (keeps the SSRC)"},
    {NULL},
};

static PyType_Slot JB_slots[] = {
    {Py_tp_doc, "JitterBuffer(decoder, *, clock_rate, frame_samples, pcm_samples=160, "
                "min_delay=0.060, max_delay=0.300, max_plc_frames=5): media/jitter.py in C."},
    {Py_tp_new, JB_new},
    {Py_tp_dealloc, JB_dealloc},
    {Py_tp_traverse, JB_traverse},
    {Py_tp_clear, JB_clear},
    {Py_tp_methods, JB_methods},
    {Py_tp_getset, JB_getset},
    {0, NULL},
};

static PyType_Spec JB_spec = {
    "dialbridge.media._dataplane.JitterBuffer",
    sizeof(DpJitterBufferObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    JB_slots,
};

static PyObject *JB_type; /* the type object, for dp_jb_from_object */

/* The dp_jb behind a _dataplane.JitterBuffer (borrowed: lives as long as the object), or
 * NULL with TypeError set when `obj` is something else. For module.c / mixer.c:
 *     dp_jb *dp_jb_from_object(PyObject *obj);                                           */
dp_jb *dp_jb_from_object(PyObject *obj)
{
    if (JB_type == NULL || !PyObject_TypeCheck(obj, (PyTypeObject *)JB_type)) {
        PyErr_SetString(PyExc_TypeError, "expected a _dataplane.JitterBuffer");
        return NULL;
    }
    return ((DpJitterBufferObject *)obj)->jb;
}

int dp_jb_add_type(PyObject *module)
{
    PyObject *type;
#define INTERN(var, text)                                                                  \
    if ((var) == NULL && ((var) = PyUnicode_InternFromString(text)) == NULL)               \
        return -1;
    INTERN(s_decode, "decode")
    INTERN(s_conceal, "conceal")
    INTERN(s_ssrc, "ssrc")
    INTERN(s_sequence_number, "sequence_number")
    INTERN(s_timestamp, "timestamp")
    INTERN(s_payload, "payload")
    INTERN(s_level, "level")
#undef INTERN
    type = PyType_FromSpec(&JB_spec);
    if (type == NULL)
        return -1;
    Py_XSETREF(JB_type, Py_NewRef(type));
    if (PyModule_AddObject(module, "JitterBuffer", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}
