#include "ops.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "veil/veil.h"

struct veil_ops {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int64_t last_beat_ms; /* 0: no beat yet */
        int64_t stale_ms;     /* ready only while the loop turns this often */
        int ready;
        char reason[512];
        int reload_wanted;
        uint64_t reloads_done;
        /* Tickets: each request takes the next; a reload the loop takes
         * covers every ticket up to `taken` (it reads the file after
         * them), and its outcome answers exactly those (`done_ticket`). A
         * reload already running when a request came read the file before
         * it, and must not answer it. */
        uint64_t requested, taken, done_ticket;
        int last_ok;
        char last_msg[VEIL_OPS_MSG_MAX];
        int closing; /* the server is stopping: waits end */
};

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int veil_ops_new(struct veil_ops **out) {
        struct veil_ops *o = calloc(1, sizeof(*o));
        if (!o)
                return -VEIL_ENOMEM;
        pthread_mutex_init(&o->mu, NULL);
        /* Waits are bounded on the monotonic clock: a wall-clock step must
         * not make a POST /reload hang or return at once. */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&o->cv, &ca);
        pthread_condattr_destroy(&ca);
        snprintf(o->reason, sizeof(o->reason), "starting");
        o->stale_ms = VEIL_OPS_READY_STALE_MS;
        *out = o;
        return 0;
}

void veil_ops_destroy(struct veil_ops *o) {
        if (!o)
                return;
        pthread_cond_destroy(&o->cv);
        pthread_mutex_destroy(&o->mu);
        free(o);
}

void veil_ops_beat(struct veil_ops *o) {
        pthread_mutex_lock(&o->mu);
        o->last_beat_ms = mono_ms();
        pthread_mutex_unlock(&o->mu);
}

void veil_ops_set_ready(struct veil_ops *o, int ready, const char *reason) {
        pthread_mutex_lock(&o->mu);
        o->ready = ready;
        snprintf(o->reason, sizeof(o->reason), "%s", reason ? reason : "");
        pthread_mutex_unlock(&o->mu);
}

int veil_ops_live(struct veil_ops *o, int timeout_ms, char *msg,
                  size_t msg_size) {
        pthread_mutex_lock(&o->mu);
        int64_t age = o->last_beat_ms ? mono_ms() - o->last_beat_ms : 0;
        pthread_mutex_unlock(&o->mu);
        if (age <= timeout_ms) {
                snprintf(msg, msg_size, "ok");
                return 1;
        }
        snprintf(msg, msg_size,
                 "the pipeline loop has not turned for %lld ms (limit %d ms)",
                 (long long)age, timeout_ms);
        return 0;
}

void veil_ops_set_ready_stale(struct veil_ops *o, int stale_ms) {
        pthread_mutex_lock(&o->mu);
        o->stale_ms = stale_ms;
        pthread_mutex_unlock(&o->mu);
}

int veil_ops_ready(struct veil_ops *o, char *msg, size_t msg_size) {
        pthread_mutex_lock(&o->mu);
        int r = o->ready;
        int64_t age = o->last_beat_ms ? mono_ms() - o->last_beat_ms : 0;
        /* The loop says whether it is ready each time it turns, so what it
         * said last is stale when it stopped turning: a broker call that
         * does not return in an outage (librdkafka's commit_transaction
         * may wait past its timeout for messages in flight). */
        if (r && age > o->stale_ms) {
                r = 0;
                snprintf(msg, msg_size,
                         "the pipeline loop has not turned for %lld ms "
                         "(waiting on the brokers?)",
                         (long long)age);
        } else {
                snprintf(msg, msg_size, "%s", r ? "ready" : o->reason);
        }
        pthread_mutex_unlock(&o->mu);
        return r;
}

uint64_t veil_ops_request_reload(struct veil_ops *o) {
        pthread_mutex_lock(&o->mu);
        o->reload_wanted = 1;
        uint64_t ticket = ++o->requested;
        pthread_mutex_unlock(&o->mu);
        return ticket;
}

int veil_ops_take_reload(struct veil_ops *o) {
        pthread_mutex_lock(&o->mu);
        int w = o->reload_wanted;
        o->reload_wanted = 0;
        o->taken = o->requested;
        pthread_mutex_unlock(&o->mu);
        return w;
}

void veil_ops_reload_done(struct veil_ops *o, int ok, const char *msg) {
        pthread_mutex_lock(&o->mu);
        o->reloads_done++;
        o->done_ticket = o->taken;
        o->last_ok = ok;
        snprintf(o->last_msg, sizeof(o->last_msg), "%s", msg ? msg : "");
        pthread_cond_broadcast(&o->cv);
        pthread_mutex_unlock(&o->mu);
}

void veil_ops_close(struct veil_ops *o) {
        pthread_mutex_lock(&o->mu);
        o->closing = 1;
        pthread_cond_broadcast(&o->cv);
        pthread_mutex_unlock(&o->mu);
}

int veil_ops_wait_reload(struct veil_ops *o, uint64_t ticket,
                         int timeout_ms, char *msg, size_t msg_size) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&o->mu);
        int rc = 0;
        while (o->done_ticket < ticket && rc == 0 && !o->closing)
                rc = pthread_cond_timedwait(&o->cv, &o->mu, &dl);
        int res;
        if (o->done_ticket < ticket && o->closing) {
                snprintf(msg, msg_size, "shutting down: the reload was not "
                                        "applied");
                res = -2;
        } else if (o->done_ticket < ticket) {
                snprintf(msg, msg_size,
                         "no reload finished within %d ms; it is still "
                         "pending (the loop reloads at a batch boundary "
                         "once side inputs have caught up)",
                         timeout_ms);
                res = -1;
        } else {
                res = o->last_ok;
                snprintf(msg, msg_size, "%s", o->last_msg);
        }
        pthread_mutex_unlock(&o->mu);
        return res;
}
