#include "pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "codec.h"
#include "codec_int.h"
#include "keyring.h"
#include "log.h"
#include "privacy_lint.h"

#define MAX_DROP_REASONS 64
#define MAX_STAGE_GAUGES 32
/* Erasure requests, and apart from them access requests, held between
 * batches before they are applied anyway (veil_pipeline_side_record):
 * ~100 bytes each, 512 + pseudonyms at most. */
#define REQUESTS_HELD_MAX 4096

struct veil_output {
        const struct veil_binding *b;
        struct veil_codec *codec; /**< NULL for dead_letter (raw bytes) */
        struct veil_buf buf;
        uint64_t count;
        int open; /**< a record was begun and not emitted */
};

struct veil_side {
        const struct veil_binding *b;
        struct veil_codec *codec;
};

struct veil_stage {
        struct veil_pipeline *p;
        size_t index;
        const struct veil_stage_cfg *cfg;
        struct veil_plugin_handle h;
        veil_params_t *params;
        void *state;
        int inited;
        struct veil_stage_stats stats;
        /* veil_privacy_set_spent / _budget: the stage's own */
        double eps_spent, delta_spent, eps_budget, delta_budget;
        int has_spent, has_budget;
        /* veil_metric_set: read by the metrics publisher on this thread */
        struct {
                char name[49];
                double value;
        } gauges[MAX_STAGE_GAUGES];
        size_t n_gauges;
        /* Per pipeline output (and, last, for any name the pipeline does
         * not bind): 1 once a write there that the plugin does not
         * declare was logged (refused(), once, not per event). */
        unsigned char *undeclared_told;
        int dropped_told; /* veil_out_event of an event out of the stream */
        int outside_told; /* a call outside its callbacks (atomic) */
};

struct veil_batch_impl {
        struct veil_source *src; /**< parallel to events */
        const char *cur_stage;
        /* While a stage's process runs: records it could not write (the
         * sink refused them, or they did not encode) and that no event
         * taken out of the stream since has answered (see unwritten()),
         * and the line about the first. A record of veil_out_event is
         * the event's own: only that event leaving the stream answers it
         * (`tied`, in the batch arena), not another one dropped for its
         * own reasons. */
        int in_process;
        uint64_t refused;
        size_t left_api; /* events out of the stream through set_status */
        const struct veil_event **tied;
        size_t n_tied, cap_tied;
        char refused_why[512];
};

struct drop_reason {
        char *reason;
        uint64_t count;
};

struct veil_pipeline {
        int outside_told; /* a batch function outside a callback (atomic) */
        const struct veil_config *cfg;
        struct veil_keyring *keyring;
        struct veil_stage *stages;
        size_t n_stages;
        struct veil_codec *in_codec;
        struct veil_output *outputs;
        size_t n_outputs;
        struct veil_output *dead_letter;
        struct veil_side *sides;
        size_t n_sides;
        struct veil_sink sink;
        size_t max_record; /**< the sink's limit, 0 unknown */

        struct veil_arena arena;
        struct veil_batch batch;
        struct veil_batch_impl impl;
        size_t cap; /**< events the batch arrays hold */
        /* The last subject pseudonym of this batch and the raw id it was
         * computed from (both in the batch arena; NULL after begin). */
        const char *last_uid, *last_subject;

        /* Subjects (raw ids) to erase or export before the next batch. */
        char **erase_queue;
        size_t n_erase, cap_erase;
        unsigned char *erase_only; /* per request: training only */
        double *erase_at; /**< parallel: when each was requested (mono s) */
        char **export_queue;
        size_t n_export, cap_export;
        int exports_early_warned;

        uint64_t events_in, decode_errors, dead_letters;
        /* Why the last batch_add returned negative (no value, no id). */
        char add_err[768];
        uint64_t erase_failures; /* subjects some stage failed to erase */
        struct drop_reason drops[MAX_DROP_REASONS];
        size_t n_drops;
        uint64_t tiers[4]; /**< decoded events by tier after the chain */
        uint64_t erasures; /**< erasures applied to every stage */
        uint64_t training_erasures; /**< of them, of training alone */
        double erase_max_ms, erase_sum_ms; /**< request to last stage */
        /* What the pipeline a reload replaced had spent: reported until
         * the stages report more (ε never goes down). */
        double eps_floor, delta_floor;
        uint64_t id; /* veil_stage_pipeline_id */
};

/* ------------------------------------------------------------------ */
/* SDK: where it may be called                                        */
/* ------------------------------------------------------------------ */

/* The pipeline whose stage callback this thread is running, if any
 * (veil_pipeline_enter). The host's functions that take a stage or a
 * batch work only inside one: from a thread of the plugin's own they
 * would race the loop (an output's record, the arena, the erase queue),
 * and after the callback returned the batch or the pipeline they name
 * may be gone. Thread-local, so checking it needs no lock. */
static __thread struct veil_pipeline *in_callback;

struct veil_pipeline *veil_pipeline_enter(struct veil_pipeline *p) {
        struct veil_pipeline *prev = in_callback;
        in_callback = p;
        return prev;
}

void veil_pipeline_leave(struct veil_pipeline *prev) { in_callback = prev; }

/* 1, said once per stage (or pipeline, for a batch's functions), when
 * `call` comes from outside p's callbacks. Only the log (line-atomic) and
 * an atomic flag are touched: this may be another thread. */
static int outside(struct veil_pipeline *p, int *told, const char *who,
                   const char *call) {
        if (p && in_callback == p)
                return 0;
        if (told && !__atomic_exchange_n(told, 1, __ATOMIC_RELAXED))
                veil_log_host(VEIL_LOG_ERROR, who,
                              "%s called outside the stage's callbacks (from "
                              "a thread of the plugin's own, or after a "
                              "callback returned): refused. The host's "
                              "functions that take a stage or a batch work "
                              "only inside init, process, on_side_record, "
                              "erase, export_subject, checkpoint and "
                              "restore, on the thread that runs them; said "
                              "once",
                              call);
        return 1;
}

static int stage_outside(struct veil_stage *st, const char *call) {
        return outside(st ? st->p : NULL, st ? &st->outside_told : NULL,
                       st ? st->cfg->use : NULL, call);
}

/* ------------------------------------------------------------------ */
/* SDK: batches and events                                            */
/* ------------------------------------------------------------------ */

/* Found through impl, not through b's own address: a plugin may pass a
 * copy of the batch (a sub-range of its events), and the offset from a
 * copy on its stack pointed into that stack. */
static struct veil_pipeline *batch_pipeline(const struct veil_batch *b) {
        if (!b || !b->impl)
                return NULL;
        return (struct veil_pipeline *)((char *)b->impl -
                                        offsetof(struct veil_pipeline, impl));
}

/* Said without a stage: every stage is handed the same batch, and which
 * one runs now is the loop thread's to know (a plugin's thread read it
 * while the loop wrote it, and could name the stage that happened to run,
 * under its plugin name where the other lines say its `use:`). */
static int batch_outside(struct veil_batch *b, const char *call) {
        struct veil_pipeline *p = batch_pipeline(b);
        return outside(p, p ? &p->outside_told : NULL, NULL, call);
}

/* The host's own: it fills batches outside any callback. */
static void *batch_alloc(struct veil_batch *b, size_t size) {
        struct veil_pipeline *p = batch_pipeline(b);
        return p ? veil_arena_alloc(&p->arena, size) : NULL;
}

static char *batch_strdup(struct veil_batch *b, const char *s) {
        if (!s)
                return NULL;
        size_t n = strlen(s);
        char *d = batch_alloc(b, n + 1);
        if (d)
                memcpy(d, s, n + 1);
        return d;
}

void *veil_batch_alloc(struct veil_batch *b, size_t size) {
        return batch_outside(b, "veil_batch_alloc") ? NULL
                                                    : batch_alloc(b, size);
}

char *veil_batch_strdup(struct veil_batch *b, const char *s) {
        return batch_outside(b, "veil_batch_strdup") ? NULL
                                                     : batch_strdup(b, s);
}

static void set_status(struct veil_batch *b, struct veil_event *ev,
                       veil_status_t st, const char *reason) {
        if (!b || !b->impl || !ev || ev->status != VEIL_PASS)
                return;
        ev->status = st;
        ev->reason = batch_strdup(b, reason ? reason : "unspecified");
        ev->stage = b->impl->cur_stage;
        /* An event the stage takes out of the stream after one of its
         * records was refused answers that record, unless the event has a
         * refused record of its own (that one it answers, at the end of
         * process). */
        struct veil_batch_impl *im = b->impl;
        if (!im->in_process)
                return;
        for (size_t i = 0; i < im->n_tied; i++)
                if (im->tied[i] == ev)
                        return;
        im->left_api++;
        if (im->refused)
                im->refused--;
}

void veil_event_drop(struct veil_batch *b, struct veil_event *ev,
                     const char *reason) {
        if (!batch_outside(b, "veil_event_drop"))
                set_status(b, ev, VEIL_DROP, reason);
}

void veil_event_dead_letter(struct veil_batch *b, struct veil_event *ev,
                            const char *error) {
        if (!batch_outside(b, "veil_event_dead_letter"))
                set_status(b, ev, VEIL_DEAD_LETTER, error);
}

/* ------------------------------------------------------------------ */
/* SDK: the stage                                                     */
/* ------------------------------------------------------------------ */

void veil_log(veil_stage_t *st, veil_log_level_t level, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        veil_log_vhost(level, st ? st->cfg->use : NULL, fmt, ap);
        va_end(ap);
        /* Any thread may log; the count is the loop's. */
        if (st && level == VEIL_LOG_ERROR && in_callback == st->p)
                st->stats.errors++;
}

/* The host's own error about a stage, on the loop thread: logged under the
 * stage's name and counted among its errors. */
static void stage_error(struct veil_stage *st, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void stage_error(struct veil_stage *st, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        veil_log_vhost(VEIL_LOG_ERROR, st->cfg->use, fmt, ap);
        va_end(ap);
        st->stats.errors++;
}

/* 1 when the plugin reads side input `name`, required or optional. */
static int plugin_reads_side(const struct veil_plugin *def, const char *name) {
        for (const char *const *si = def->side_inputs; si && *si; si++)
                if (!strcmp(*si, name))
                        return 1;
        for (const char *const *si = veil_plugin_optional_sides(def); si && *si;
             si++)
                if (!strcmp(*si, name))
                        return 1;
        return 0;
}

static struct veil_output *find_output(struct veil_pipeline *p,
                                       const char *name) {
        for (size_t i = 0; i < p->n_outputs; i++)
                if (!strcmp(p->outputs[i].b->name, name))
                        return &p->outputs[i];
        return NULL;
}

static int stage_declares(const struct veil_plugin *def, const char *output) {
        for (const char *const *o = def->outputs; o && *o; o++)
                if (!strcmp(*o, output))
                        return 1;
        return 0;
}

/* A stage writes only to the outputs its plugin declares. The privacy
 * lint checks each output at the stages that declare it, and nowhere
 * else: a record to an output the stage never declared (a stage before
 * pseudonymize writing the raw event to `events`) would leave unchecked.
 * Such a write is refused here, whatever the pipeline binds: 1 when
 * `output` is not the stage's, said once per stage and output, and
 * counted as the stage's error every time. The name is said only when
 * it is one the pipeline binds (from the YAML): any other is the
 * plugin's own text, which could hold anything. Not counted among the
 * batch's unwritten records (unwritten()): that record was never the
 * pipeline's to write, and failing the batch over it would only stop
 * the host at every start, on a plugin's bug the log names. */
static int undeclared(struct veil_stage *st, const char *output,
                      const char *call) {
        if (output && stage_declares(st->h.def, output))
                return 0;
        struct veil_pipeline *p = st->p;
        size_t slot = p->n_outputs; /* not bound */
        for (size_t i = 0; output && i < p->n_outputs; i++)
                if (!strcmp(p->outputs[i].b->name, output))
                        slot = i;
        if (st->undeclared_told && st->undeclared_told[slot]) {
                st->stats.errors++;
                return 1;
        }
        if (st->undeclared_told)
                st->undeclared_told[slot] = 1;
        if (slot < p->n_outputs)
                stage_error(st,
                            "stage %zu (%s): %s to output '%s', which is not "
                            "among the plugin's outputs: refused, nothing is "
                            "written (the privacy lint checks an output only "
                            "at the stages that declare it); said once, every "
                            "such write is refused",
                            st->index + 1, st->h.def->name, call,
                            p->outputs[slot].b->name);
        else
                stage_error(st,
                            "stage %zu (%s): %s to an output that is not among "
                            "the plugin's outputs and that the pipeline does "
                            "not bind: refused, nothing is written; said once, "
                            "every such write is refused",
                            st->index + 1, st->h.def->name, call);
        return 1;
}

/* dead_letter is bound in every pipeline but takes no records from
 * plugins (a stage dead-letters an event by its status), so it has no
 * codec and does not count as bound here. Nor does an output the stage's
 * plugin does not declare: the stage may not write there (undeclared()),
 * and asking is not writing, so it is not logged. */
int veil_out_bound(veil_stage_t *st, const char *output) {
        if (stage_outside(st, "veil_out_bound"))
                return 0;
        if (!output || !stage_declares(st->h.def, output))
                return 0;
        struct veil_output *o = find_output(st->p, output);
        return o && o->codec;
}

veil_rec_t *veil_out_begin(veil_stage_t *st, const char *output) {
        if (stage_outside(st, "veil_out_begin") ||
            undeclared(st, output, "veil_out_begin"))
                return NULL;
        struct veil_output *o = find_output(st->p, output);
        if (!o || !o->codec)
                return NULL;
        o->open = 1;
        return veil_codec_rec_begin(o->codec);
}

/* A record that could not be written (-VEIL_EINVAL: it did not encode,
 * or the sink refused it as too large): said without the record (it may
 * hold anything), and, during a stage's process, counted until an event
 * taken out of the stream answers it — `ev`, when the record was that
 * event's own. Between batches (a side record's audit record, the host's
 * access record) there is no batch to hold back: the emitter decides. */
static void unwritten(struct veil_pipeline *p, struct veil_stage *st,
                      const struct veil_event *ev, const char *why) {
        if (st)
                stage_error(st, "%s", why);
        else
                veil_log_host(VEIL_LOG_ERROR, NULL, "%s", why);
        struct veil_batch_impl *im = &p->impl;
        if (!st || !im->in_process)
                return;
        if (!im->refused && !im->n_tied)
                snprintf(im->refused_why, sizeof(im->refused_why), "%s", why);
        /* Only an event of the batch can be answered for (a plugin may
         * hand over a copy, gone when process returns). */
        if (ev && (ev < p->batch.events || ev >= p->batch.events + p->batch.n))
                ev = NULL;
        if (ev) {
                if (im->n_tied == im->cap_tied) {
                        /* Out of memory: counted untied, which any event
                         * leaving the stream answers (the old rule). */
                        size_t c = im->cap_tied ? 2 * im->cap_tied : 16;
                        const struct veil_event **t = veil_arena_alloc(
                                &p->arena, c * sizeof(*t));
                        if (t) {
                                if (im->n_tied)
                                        memcpy(t, im->tied,
                                               im->n_tied * sizeof(*t));
                                im->tied = t;
                                im->cap_tied = c;
                        }
                }
                if (im->n_tied < im->cap_tied) {
                        im->tied[im->n_tied++] = ev;
                        return;
                }
        }
        im->refused++;
}

static int produce(struct veil_pipeline *p, struct veil_stage *st,
                   struct veil_output *o, const struct veil_event *ev,
                   const void *key, size_t key_len) {
        if (!p->sink.produce)
                return -VEIL_ESTATE;
        int rc = p->sink.produce(p->sink.ctx, o->b->topic, key, key_len,
                                 o->buf.data, o->buf.len, NULL);
        if (rc == 0) {
                o->count++;
        } else if (rc == -VEIL_EINVAL) {
                char limit[128] = "over the producer's message.max.bytes";
                if (p->max_record)
                        snprintf(limit, sizeof(limit),
                                 "the producer's message.max.bytes is %zu",
                                 p->max_record);
                char why[512];
                snprintf(why, sizeof(why),
                         "output '%s': a record of %zu bytes is too large "
                         "for topic '%s' (%s); it is not produced",
                         o->b->name, key_len + o->buf.len, o->b->topic,
                         limit);
                unwritten(p, st, ev, why);
        }
        return rc;
}

/* A record that did not encode is not written either: a stage that went
 * on without answering it would lose it as surely as a refused one. */
static int not_encoded(struct veil_stage *st, const struct veil_event *ev,
                       const char *output, const char *err, int rc) {
        char why[512];
        snprintf(why, sizeof(why), "output '%s': %s", output, err);
        unwritten(st->p, st, ev, why);
        return rc;
}

int veil_out_emit(veil_stage_t *st, const char *output, const void *key,
                  size_t key_len) {
        if (stage_outside(st, "veil_out_emit"))
                return -VEIL_ESTATE;
        if (undeclared(st, output, "veil_out_emit"))
                return -VEIL_EINVAL;
        struct veil_output *o = find_output(st->p, output);
        if (!o)
                return 0; /* unbound output: emitting is a no-op */
        if (!o->open) {
                stage_error(st,
                            "emit to output '%s' without veil_out_begin",
                            output);
                return -VEIL_ESTATE;
        }
        o->open = 0;
        char err[256];
        int rc = veil_codec_rec_encode(o->codec, &o->buf, err, sizeof(err));
        if (rc)
                return not_encoded(st, NULL, output, err, rc);
        return produce(st->p, st, o, NULL, key, key_len);
}

int veil_out_event(veil_stage_t *st, const char *output,
                   const struct veil_event *ev) {
        if (stage_outside(st, "veil_out_event"))
                return -VEIL_ESTATE;
        if (undeclared(st, output, "veil_out_event"))
                return -VEIL_EINVAL;
        /* An event out of the stream (dropped, by consent too, or
         * dead-lettered) is not written: emitted after its drop, it
         * reached the output with its raw ids. */
        if (!ev || ev->status != VEIL_PASS) {
                /* veil_log counts an error itself. */
                if (st->dropped_told)
                        st->stats.errors++;
                else
                        stage_error(st,
                                    "stage %zu (%s): veil_out_event of an "
                                    "event taken out of the stream (dropped or "
                                    "dead-lettered): refused, nothing is "
                                    "written; said once, every such write is "
                                    "refused",
                                    st->index + 1, st->h.def->name);
                st->dropped_told = 1;
                return -VEIL_EINVAL;
        }
        struct veil_output *o = find_output(st->p, output);
        if (!o)
                return 0;
        if (!o->codec) {
                stage_error(st,
                            "output '%s' takes no records from plugins (set "
                            "the event's status to VEIL_DEAD_LETTER instead)",
                            output);
                return -VEIL_EINVAL;
        }
        char err[256];
        int rc = veil_codec_encode_event(o->codec, ev, &o->buf, err,
                                         sizeof(err));
        if (rc)
                return not_encoded(st, ev, output, err, rc);
        const char *key = ev->user_id ? ev->user_id : "";
        return produce(st->p, st, o, ev, key, strlen(key));
}

static int enqueue(char ***q, size_t *n, size_t *cap, const char *raw_id) {
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 16;
                char **nq = realloc(*q, c * sizeof(char *));
                if (!nq)
                        return -VEIL_ENOMEM;
                *q = nq;
                *cap = c;
        }
        if (!((*q)[*n] = strdup(raw_id)))
                return -VEIL_ENOMEM;
        (*n)++;
        return 0;
}

static double mono_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int request_erase(veil_stage_t *st, const char *raw_id,
                         int training_only) {
        struct veil_pipeline *p = st->p;
        int rc = enqueue(&p->erase_queue, &p->n_erase, &p->cap_erase, raw_id);
        if (rc)
                return rc;
        /* The request time, for the erasure latency the summary reports,
         * and its scope. */
        double *at = realloc(p->erase_at, p->cap_erase * sizeof(*at));
        if (at)
                p->erase_at = at;
        unsigned char *only = at ? realloc(p->erase_only, p->cap_erase)
                                 : NULL;
        if (!at || !only) {
                free(p->erase_queue[--p->n_erase]);
                return -VEIL_ENOMEM;
        }
        p->erase_only = only;
        at[p->n_erase - 1] = mono_s();
        only[p->n_erase - 1] = (unsigned char)(training_only != 0);
        return 0;
}

int veil_request_erase(veil_stage_t *st, const char *raw_id) {
        if (stage_outside(st, "veil_request_erase"))
                return -VEIL_ESTATE;
        return request_erase(st, raw_id, 0);
}

int veil_request_erase_training(veil_stage_t *st, const char *raw_id) {
        if (stage_outside(st, "veil_request_erase_training"))
                return -VEIL_ESTATE;
        return request_erase(st, raw_id, 1);
}

int veil_request_export(veil_stage_t *st, const char *raw_id) {
        if (stage_outside(st, "veil_request_export"))
                return -VEIL_ESTATE;
        struct veil_pipeline *p = st->p;
        return enqueue(&p->export_queue, &p->n_export, &p->cap_export, raw_id);
}

int veil_keygen(const char *path, char *errstr, size_t errstr_size) {
        return veil_keyring_keygen(path, errstr, errstr_size);
}

void veil_instance_id(char *out, size_t size) {
        const char *inst = getenv("VEIL_INSTANCE_ID");
        char host[256] = "";
        if (!size)
                return;
        if (!inst || !*inst) {
                if (gethostname(host, sizeof(host) - 1) || !host[0])
                        snprintf(host, sizeof(host), "veil");
                inst = host;
        }
        snprintf(out, size, "%s", inst);
}

int veil_pseudonym(veil_stage_t *st, const char *domain, const void *id,
                   size_t id_len, char *out, size_t out_size) {
        /* A reload replaces the keyring under a thread of its own. */
        if (stage_outside(st, "veil_pseudonym"))
                return -VEIL_ESTATE;
        if (!st->p->keyring)
                return -VEIL_ESTATE;
        return veil_keyring_pseudonym(st->p->keyring, domain, id, id_len, out,
                                      out_size);
}

void veil_privacy_set_spent(veil_stage_t *st, double epsilon, double delta) {
        if (stage_outside(st, "veil_privacy_set_spent"))
                return;
        st->eps_spent = epsilon;
        st->delta_spent = delta;
        st->has_spent = 1;
}

uint64_t veil_stage_pipeline_id(const veil_stage_t *st) { return st->p->id; }

void veil_privacy_set_budget(veil_stage_t *st, double epsilon, double delta) {
        if (stage_outside(st, "veil_privacy_set_budget"))
                return;
        st->eps_budget = epsilon;
        st->delta_budget = delta;
        st->has_budget = 1;
}

int veil_metric_set(veil_stage_t *st, const char *name, double value) {
        if (stage_outside(st, "veil_metric_set"))
                return -VEIL_ESTATE;
        size_t n = name ? strlen(name) : 0;
        int ok = n > 0 && n < sizeof(st->gauges[0].name) &&
                 !(name[0] >= '0' && name[0] <= '9');
        for (size_t i = 0; ok && i < n; i++)
                ok = (name[i] >= 'a' && name[i] <= 'z') || name[i] == '_' ||
                     (name[i] >= '0' && name[i] <= '9');
        if (!ok)
                return -VEIL_EINVAL;
        for (size_t i = 0; i < st->n_gauges; i++) {
                if (!strcmp(st->gauges[i].name, name)) {
                        st->gauges[i].value = value;
                        return 0;
                }
        }
        if (st->n_gauges == MAX_STAGE_GAUGES)
                return -VEIL_EINVAL;
        memcpy(st->gauges[st->n_gauges].name, name, n + 1);
        st->gauges[st->n_gauges++].value = value;
        return 0;
}

/* ------------------------------------------------------------------ */
/* Construction                                                       */
/* ------------------------------------------------------------------ */

int veil_pipeline_new(struct veil_pipeline **pp, const struct veil_config *cfg,
                      const struct veil_pipeline_opts *opts, char *errstr,
                      size_t errstr_size) {
        static _Atomic uint64_t next_id;
        struct veil_pipeline *p = calloc(1, sizeof(*p));
        if (!p)
                return -VEIL_ENOMEM;
        p->id = ++next_id;
        p->cfg = cfg;
        p->keyring = opts ? opts->keyring : NULL;
        veil_arena_init(&p->arena, 1 << 20, 0);
        p->batch.impl = &p->impl;
        int rc;

        rc = veil_codec_new(&p->in_codec, cfg, &cfg->input, errstr,
                            errstr_size);
        if (rc)
                goto fail;

        p->outputs = calloc(cfg->n_outputs, sizeof(*p->outputs));
        p->n_outputs = cfg->n_outputs;
        for (size_t i = 0; i < cfg->n_outputs; i++) {
                struct veil_output *o = &p->outputs[i];
                o->b = &cfg->outputs[i];
                if (!strcmp(o->b->name, "dead_letter")) {
                        p->dead_letter = o;
                        continue; /* original bytes, no schema */
                }
                rc = veil_codec_new(&o->codec, cfg, o->b, errstr, errstr_size);
                if (rc)
                        goto fail;
        }
        p->sides = calloc(cfg->n_side_inputs ? cfg->n_side_inputs : 1,
                          sizeof(*p->sides));
        p->n_sides = cfg->n_side_inputs;
        for (size_t i = 0; i < cfg->n_side_inputs; i++) {
                p->sides[i].b = &cfg->side_inputs[i];
                rc = veil_codec_new(&p->sides[i].codec, cfg,
                                    &cfg->side_inputs[i], errstr, errstr_size);
                if (rc)
                        goto fail;
        }

        /* The YAML's plugin_path first, then the caller's (VEIL_PLUGIN_PATH,
         * the install directory): a pipeline can pin its own plugins. */
        size_t n_path = cfg->n_plugin_path +
                        (opts ? opts->n_extra_path : 0);
        char **path = calloc(n_path ? n_path : 1, sizeof(char *));
        for (size_t i = 0; i < cfg->n_plugin_path; i++)
                path[i] = cfg->plugin_path[i];
        for (size_t i = 0; opts && i < opts->n_extra_path; i++)
                path[cfg->n_plugin_path + i] = opts->extra_path[i];

        p->stages = calloc(cfg->n_stages, sizeof(*p->stages));
        p->n_stages = cfg->n_stages;
        for (size_t i = 0; i < cfg->n_stages; i++) {
                struct veil_stage *s = &p->stages[i];
                const struct veil_stage_cfg *sc = &cfg->stages[i];
                s->p = p;
                s->index = i;
                s->cfg = sc;
                /* Out of memory: every refusal is logged, rather than
                 * none. */
                s->undeclared_told = calloc(p->n_outputs + 1, 1);
                char lerr[1024];
                char *use = strchr(sc->use, '/') ? veil_config_path(cfg, sc->use)
                                                 : strdup(sc->use);
                rc = veil_plugin_load(&s->h, use, path, n_path, lerr,
                                      sizeof(lerr));
                free(use);
                if (rc) {
                        snprintf(errstr, errstr_size, "%s:%d:%d: %s",
                                 cfg->file, sc->line, sc->col, lerr);
                        free(path);
                        goto fail;
                }
                rc = veil_params_build(&s->params, cfg, sc, s->h.def->name,
                                       s->h.def->params, errstr, errstr_size);
                if (rc) {
                        free(path);
                        goto fail;
                }
        }
        free(path);

        if (!opts || !opts->lint_only) {
                for (size_t i = 0; i < p->n_stages; i++) {
                        struct veil_stage *s = &p->stages[i];
                        char ierr[1024] = "";
                        struct veil_pipeline *was = veil_pipeline_enter(p);
                        rc = s->h.def->init(s, s->params, &s->state, ierr,
                                            sizeof(ierr));
                        veil_pipeline_leave(was);
                        if (rc) {
                                snprintf(errstr, errstr_size,
                                         "%s:%d:%d: plugin '%s' failed to "
                                         "start: %s",
                                         cfg->file, s->cfg->line, s->cfg->col,
                                         s->h.def->name,
                                         ierr[0] ? ierr : "(no message)");
                                goto fail;
                        }
                        s->inited = 1;
                }
        }
        *pp = p;
        return 0;
fail:
        veil_pipeline_destroy(p);
        return rc ? rc : -VEIL_EINVAL;
}

void veil_pipeline_destroy(struct veil_pipeline *p) {
        if (!p)
                return;
        for (size_t i = p->n_stages; i-- > 0;) {
                struct veil_stage *s = &p->stages[i];
                if (s->inited) {
                        struct veil_pipeline *was = veil_pipeline_enter(p);
                        s->h.def->destroy(s->state);
                        veil_pipeline_leave(was);
                }
                veil_params_destroy(s->params);
                veil_plugin_unload(&s->h);
                free(s->undeclared_told);
        }
        free(p->stages);
        for (size_t i = 0; i < p->n_outputs; i++) {
                veil_codec_destroy(p->outputs[i].codec);
                veil_buf_free(&p->outputs[i].buf);
        }
        free(p->outputs);
        for (size_t i = 0; i < p->n_sides; i++)
                veil_codec_destroy(p->sides[i].codec);
        free(p->sides);
        veil_codec_destroy(p->in_codec);
        for (size_t i = 0; i < p->n_erase; i++)
                free(p->erase_queue[i]);
        free(p->erase_queue);
        free(p->erase_only);
        free(p->erase_at);
        for (size_t i = 0; i < p->n_export; i++)
                free(p->export_queue[i]);
        free(p->export_queue);
        for (size_t i = 0; i < p->n_drops; i++)
                free(p->drops[i].reason);
        veil_arena_free(&p->arena);
        free(p);
}

void veil_pipeline_set_sink(struct veil_pipeline *p, struct veil_sink sink) {
        p->sink = sink;
}

void veil_pipeline_set_max_record(struct veil_pipeline *p, size_t max_bytes) {
        p->max_record = max_bytes;
}

int veil_pipeline_lint(struct veil_pipeline *p, char *errstr,
                       size_t errstr_size) {
        const struct veil_config *cfg = p->cfg;
        /* An output nobody writes is a typo or a forgotten plugin. */
        for (size_t i = 0; i < p->n_outputs; i++) {
                const struct veil_binding *b = p->outputs[i].b;
                if (!strcmp(b->name, "dead_letter"))
                        continue;
                int found = 0;
                for (size_t s = 0; s < p->n_stages && !found; s++)
                        found = stage_declares(p->stages[s].h.def, b->name);
                if (!found) {
                        char names[512] = "";
                        size_t off = 0;
                        for (size_t s = 0; s < p->n_stages; s++)
                                for (const char *const *o =
                                             p->stages[s].h.def->outputs;
                                     o && *o && off < sizeof(names); o++)
                                        off += (size_t)snprintf(
                                                names + off,
                                                sizeof(names) - off, "%s%s",
                                                off ? ", " : "", *o);
                        snprintf(errstr, errstr_size,
                                 "%s:%d:%d: output '%s' is produced by no "
                                 "plugin of the pipeline; the plugins "
                                 "produce: %s",
                                 cfg->file, b->line, b->col, b->name,
                                 off ? names : "(nothing)");
                        return -VEIL_EINVAL;
                }
        }
        /* A side input a plugin needs but the YAML does not bind would leave
         * that plugin deciding on nothing (consent: deny everyone). */
        for (size_t s = 0; s < p->n_stages; s++) {
                const struct veil_plugin *def = p->stages[s].h.def;
                for (const char *const *si = def->side_inputs; si && *si;
                     si++) {
                        int found = 0;
                        for (size_t k = 0; k < p->n_sides && !found; k++)
                                found = !strcmp(p->sides[k].b->name, *si);
                        if (!found) {
                                snprintf(errstr, errstr_size,
                                         "%s:%d:%d: plugin '%s' reads the side "
                                         "input '%s', which side_inputs does "
                                         "not bind; add side_inputs: {%s: "
                                         "{topic: ..., schema: ...}}",
                                         cfg->file, p->stages[s].cfg->line,
                                         p->stages[s].cfg->col, def->name, *si,
                                         *si);
                                return -VEIL_EINVAL;
                        }
                }
        }
        /* The consent stage decides each event's tier and drops those of
         * people who allowed nothing. A stage before it that writes
         * outputs or keeps what it learns about people (it can erase,
         * export or checkpoint) sees everyone undecided, which context and
         * dp_model treat as their default tier: recommendations and
         * profiles for people whose consent is none. The plugin says it
         * decides (VEIL_PLUGIN_DECIDES_CONSENT), whatever its name. */
        for (size_t c = 0; c < p->n_stages; c++) {
                if (!(veil_plugin_flags(p->stages[c].h.def) &
                      VEIL_PLUGIN_DECIDES_CONSENT))
                        continue;
                for (size_t s = 0; s < c; s++) {
                        const struct veil_plugin *def = p->stages[s].h.def;
                        if (!(def->outputs && def->outputs[0]) &&
                            !def->erase && !def->export_subject &&
                            !def->checkpoint)
                                continue;
                        snprintf(errstr, errstr_size,
                                 "%s:%d:%d: stage %zu (%s) comes before the "
                                 "consent stage (line %d): it writes outputs "
                                 "or keeps what it learns about people, and "
                                 "would do so for people whose consent is "
                                 "not decided yet; move `- use: %s` above "
                                 "it",
                                 cfg->file, p->stages[s].cfg->line,
                                 p->stages[s].cfg->col, s + 1, def->name,
                                 p->stages[c].cfg->line,
                                 p->stages[c].h.def->name);
                        return -VEIL_EINVAL;
                }
                break;
        }
        /* A side input no plugin reads is a typo (model_update for
         * model_updates): the exchange it was meant for is off, silently,
         * and the topic is still read to its end before the host is ready. */
        for (size_t k = 0; k < p->n_sides; k++) {
                const char *name = p->sides[k].b->name;
                int found = 0;
                for (size_t s = 0; s < p->n_stages; s++)
                        found |= plugin_reads_side(p->stages[s].h.def, name);
                if (!found) {
                        /* What the plugins do read, for the message. */
                        char names[512] = "";
                        size_t off = 0;
                        for (size_t s = 0; s < p->n_stages; s++) {
                                const struct veil_plugin *def =
                                        p->stages[s].h.def;
                                const char *const *lists[2] = {
                                        def->side_inputs,
                                        veil_plugin_optional_sides(def)};
                                for (int l = 0; l < 2; l++)
                                        for (const char *const *si = lists[l];
                                             si && *si && off < sizeof(names);
                                             si++)
                                                off += (size_t)snprintf(
                                                        names + off,
                                                        sizeof(names) - off,
                                                        "%s%s", off ? ", " : "",
                                                        *si);
                        }
                        snprintf(errstr, errstr_size,
                                 "%s:%d:%d: side input '%s' is read by no "
                                 "plugin of the pipeline; the plugins read: "
                                 "%s",
                                 cfg->file, p->sides[k].b->line,
                                 p->sides[k].b->col, name,
                                 off ? names : "(none)");
                        return -VEIL_EINVAL;
                }
        }
        /* No field the output schemas mark "pii" reaches them raw. */
        return veil_privacy_lint_check(p, p->keyring != NULL, errstr,
                                       errstr_size);
}

/* ------------------------------------------------------------------ */
/* Batches                                                            */
/* ------------------------------------------------------------------ */

/* A subject as the stages may hold it: the raw id with the active key's
 * pseudonym first (NULL without keys), then the pseudonym under each older
 * key of the keyring, since a stage may hold data from before a rotation.
 * Both the raw id and a pseudonym are given so that stages before and after
 * pseudonymization find what they hold. */
struct subject_forms {
        size_t n;
        struct veil_subject f[1 + VEIL_KEYRING_MAX_KEYS];
        char pseudo[1 + VEIL_KEYRING_MAX_KEYS][VEIL_PSEUDONYM_MAX];
};

static void subject_forms(struct veil_pipeline *p, const char *raw,
                          struct subject_forms *sf) {
        sf->n = 1;
        sf->f[0] = (struct veil_subject){.raw_id = raw};
        if (!p->keyring)
                return;
        if (veil_keyring_pseudonym(p->keyring, "subject", raw, strlen(raw),
                                   sf->pseudo[0], VEIL_PSEUDONYM_MAX) > 0)
                sf->f[0].pseudonym = sf->pseudo[0];
        const char *active = veil_keyring_active_id(p->keyring);
        for (size_t k = 0; k < veil_keyring_n_keys(p->keyring) &&
                           sf->n < 1 + VEIL_KEYRING_MAX_KEYS;
             k++) {
                const char *id = veil_keyring_key_id(p->keyring, k);
                if (!id || (active && !strcmp(id, active)) ||
                    veil_keyring_pseudonym_key(p->keyring, id, "subject", raw,
                                               strlen(raw), sf->pseudo[sf->n],
                                               VEIL_PSEUDONYM_MAX) <= 0)
                        continue;
                sf->f[sf->n] = (struct veil_subject){.raw_id = raw,
                                                    .pseudonym = sf->pseudo[sf->n]};
                sf->n++;
        }
}

/* One access record per request: each stage fills its own section. */
static void apply_exports(struct veil_pipeline *p) {
        for (size_t i = 0; i < p->n_export; i++) {
                struct subject_forms sf;
                subject_forms(p, p->export_queue[i], &sf);
                const struct veil_subject subj = sf.f[0];
                struct veil_output *o = find_output(p, "access");
                veil_rec_t *r = o && o->codec ? veil_codec_rec_begin(o->codec)
                                              : NULL;
                if (!r || !subj.pseudonym) {
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "access request dropped: the pipeline "
                                      "binds no 'access' output or has no "
                                      "keys");
                } else {
                        /* The wall clock: the batch's is not set yet
                         * before the first batch (it said 1970). */
                        struct timespec now;
                        clock_gettime(CLOCK_REALTIME, &now);
                        veil_rec_set_str(r, "subject", subj.pseudonym);
                        veil_rec_set_long(r, "ts",
                                          (int64_t)now.tv_sec * 1000 +
                                                  now.tv_nsec / 1000000);
                        for (size_t s = 0; s < p->n_stages; s++) {
                                struct veil_stage *st = &p->stages[s];
                                if (!st->inited || !st->h.def->export_subject)
                                        continue;
                                veil_rec_t *sec = veil_rec_map_add(
                                        r, "sections", st->h.def->name);
                                int bad = 0;
                                struct veil_pipeline *was =
                                        veil_pipeline_enter(p);
                                for (size_t f = 0; sec && f < sf.n; f++)
                                        bad |= st->h.def->export_subject(
                                                       st->state, &sf.f[f],
                                                       sec) != 0;
                                veil_pipeline_leave(was);
                                /* A stage that could not say everything
                                 * it holds: the answer says so, rather
                                 * than passing for complete. */
                                if (bad && sec) {
                                        veil_rec_map_put(
                                                sec, "", "_incomplete",
                                                "this stage failed to "
                                                "export all it holds; ask "
                                                "again or contact the "
                                                "operator");
                                        stage_error(st,
                                                    "access request: the "
                                                    "stage's export failed; "
                                                    "its section is marked "
                                                    "_incomplete");
                                }
                        }
                        char err[256];
                        /* A record too large is logged by produce(): the
                         * request stays unanswered (the next start asks
                         * again while it is on the topic), and the host
                         * goes on rather than stopping at every start. */
                        if (veil_codec_rec_encode(o->codec, &o->buf, err,
                                                  sizeof(err)) == 0)
                                produce(p, NULL, o, NULL, subj.pseudonym,
                                        strlen(subj.pseudonym));
                        else
                                veil_log_host(VEIL_LOG_ERROR, NULL,
                                              "access record: %s", err);
                }
                free(p->export_queue[i]);
        }
        p->n_export = 0;
}

static void apply_erasures(struct veil_pipeline *p) {
        uint64_t failures_before = p->erase_failures;
        size_t training = 0;
        for (size_t i = 0; i < p->n_erase; i++) {
                struct subject_forms sf;
                subject_forms(p, p->erase_queue[i], &sf);
                for (size_t f = 0; f < sf.n; f++)
                        sf.f[f].training_only = p->erase_only[i];
                int failed = 0;
                for (size_t s = 0; s < p->n_stages; s++) {
                        struct veil_stage *st = &p->stages[s];
                        if (!st->inited || !st->h.def->erase)
                                continue;
                        int bad = 0;
                        struct veil_pipeline *was = veil_pipeline_enter(p);
                        for (size_t f = 0; f < sf.n; f++)
                                bad |= st->h.def->erase(st->state,
                                                        &sf.f[f]) != 0;
                        veil_pipeline_leave(was);
                        if (!bad)
                                continue;
                        /* An erasure that did not happen is never reported
                         * as done: said (without the subject) and counted
                         * as the stage's error. */
                        st->stats.errors++;
                        failed++;
                        veil_log_host(VEIL_LOG_ERROR, st->h.def->name,
                                      "stage %zu (%s) failed to erase a "
                                      "subject: what it holds about them "
                                      "was not erased",
                                      s + 1, st->h.def->name);
                }
                p->erase_failures += failed > 0;
                free(p->erase_queue[i]);
                /* From the request (a withdrawal's arrival) to the last
                 * stage's erase. */
                double ms = (mono_s() - p->erase_at[i]) * 1e3;
                if (failed)
                        continue; /* not applied in every stage */
                p->erasures++;
                p->training_erasures += p->erase_only[i] != 0;
                training += p->erase_only[i] != 0;
                p->erase_sum_ms += ms;
                if (ms > p->erase_max_ms)
                        p->erase_max_ms = ms;
        }
        if (p->n_erase && p->erase_failures == failures_before)
                veil_log_host(VEIL_LOG_INFO, NULL,
                              "erased %zu subject(s) in every stage (%zu of "
                              "them from training only), %.1f ms after the "
                              "oldest request",
                              p->n_erase, training,
                              (mono_s() - p->erase_at[0]) * 1e3);
        else if (p->n_erase)
                veil_log_host(VEIL_LOG_ERROR, NULL,
                              "erased %zu of %zu subject(s) in every stage; "
                              "a stage failed for the others (logged above)",
                              p->n_erase - (size_t)(p->erase_failures -
                                                    failures_before),
                              p->n_erase);
        p->n_erase = 0;
}

struct veil_batch *veil_pipeline_batch_begin(struct veil_pipeline *p) {
        /* Exports first: an access request and an erasure in the same
         * interval answer with what was held before the erasure. */
        apply_exports(p);
        apply_erasures(p);
        p->exports_early_warned = 0; /* once per catch-up */
        veil_arena_reset(&p->arena);
        p->last_uid = p->last_subject = NULL;
        p->cap = (size_t)(p->cfg->max_events > 0 ? p->cfg->max_events : 256);
        p->batch.events = veil_arena_alloc(&p->arena,
                                           p->cap * sizeof(struct veil_event));
        p->impl.src = veil_arena_alloc(&p->arena,
                                       p->cap * sizeof(struct veil_source));
        p->batch.n = 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p->batch.now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        return &p->batch;
}

size_t veil_pipeline_batch_size(const struct veil_pipeline *p) {
        return p->batch.n;
}

static int dead_letter(struct veil_pipeline *p, const struct veil_source *src,
                       const char *stage, const char *error) {
        p->dead_letters++;
        if (!p->dead_letter || !p->sink.produce)
                return -VEIL_ESTATE;
        struct veil_dead_letter dl = {error, stage, src};
        int rc = p->sink.produce(p->sink.ctx, p->dead_letter->b->topic,
                                 src->key, src->key_len, src->value,
                                 src->value_len, &dl);
        if (rc == 0)
                p->dead_letter->count++;
        return rc;
}

/* The batch arrays are sized by max_events; a caller that adds more (replay
 * with a larger chunk) grows them in the arena. */
static int ensure_room(struct veil_pipeline *p) {
        if (p->batch.n < p->cap)
                return 0;
        size_t cap = p->cap * 2;
        struct veil_event *ev = veil_arena_alloc(&p->arena, cap * sizeof(*ev));
        struct veil_source *src = veil_arena_alloc(&p->arena,
                                                   cap * sizeof(*src));
        if (!ev || !src)
                return -VEIL_ENOMEM;
        memcpy(ev, p->batch.events, p->batch.n * sizeof(*ev));
        memcpy(src, p->impl.src, p->batch.n * sizeof(*src));
        p->batch.events = ev;
        p->impl.src = src;
        p->cap = cap;
        return 0;
}

/* Whether pseudonym ps ("<keyid>.<b64>") was made under key id kid. */
static int under_key(const char *ps, const char *kid) {
        size_t n = strlen(kid);
        return !strncmp(ps, kid, n) && ps[n] == '.';
}

/* The subject pseudonym is computed once, by the host, so erasure and
 * export find a user's state on either side of pseudonymization.
 * A user's events come in runs (a visit, an order's lines, a partition
 * keyed by user): an event of the same user as the one before, under the
 * same active key, takes that event's pseudonym — the same keyed hash of
 * the same bytes — instead of two SHA-256 compressions (0.4 us). Only the
 * previous event's id is compared, already held in this batch. */
static void set_subject(struct veil_pipeline *p, struct veil_event *ev) {
        if (!p->keyring || !ev->user_id)
                return;
        const char *kid;
        if (p->last_uid && !strcmp(p->last_uid, ev->user_id) &&
            (kid = veil_keyring_active_id(p->keyring)) &&
            under_key(p->last_subject, kid)) {
                ev->subject = p->last_subject;
                return;
        }
        char pseudo[VEIL_PSEUDONYM_MAX];
        p->last_uid = p->last_subject = NULL;
        if (veil_keyring_pseudonym(p->keyring, "subject", ev->user_id,
                                   strlen(ev->user_id), pseudo,
                                   sizeof(pseudo)) > 0 &&
            (ev->subject = batch_strdup(&p->batch, pseudo))) {
                p->last_uid = ev->user_id;
                p->last_subject = ev->subject;
        }
}

/* What no stage should have to guard against, refused before any sees
 * it: an id longer than VEIL_ID_MAX (stages keep ids — popular's counts,
 * the catalogs' new items, profiles — and put them in every record: a few
 * events with 60 KB item ids made every later recommendation too large for
 * its topic) and a time outside [1970, 9999] (stages subtract times, which
 * overflows near the ends of int64). Returns NULL or why, naming the field
 * and never an id's value (a time's is given). */
static const char *event_invalid(const struct veil_event *ev, char *buf,
                                 size_t size) {
        const struct {
                const char *name, *v;
        } ids[] = {{"event_id", ev->event_id},
                   {"user_id", ev->user_id},
                   {"item_id", ev->item_id},
                   {"context.session_id", ev->ctx.session_id}};
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                size_t n = ids[i].v ? strnlen(ids[i].v, VEIL_ID_MAX + 1) : 0;
                if (n > VEIL_ID_MAX) {
                        snprintf(buf, size,
                                 "field '%s' is longer than the %d bytes an "
                                 "id may have",
                                 ids[i].name, VEIL_ID_MAX);
                        return buf;
                }
                /* Kafka's decoders check UTF-8; a CSV replay does not.
                 * An item id that is not, once in popular's list, made
                 * every later record fail to encode. */
                if (n && !veil_utf8_valid(ids[i].v, n)) {
                        snprintf(buf, size, "field '%s' is not valid UTF-8",
                                 ids[i].name);
                        return buf;
                }
        }
        if (ev->ts_ms < 0 || ev->ts_ms > VEIL_TS_MAX_MS) {
                snprintf(buf, size,
                         "field 'ts' (%lld ms) is outside 1970-01-01 to "
                         "9999-12-31",
                         (long long)ev->ts_ms);
                return buf;
        }
        return NULL;
}

int veil_pipeline_batch_add(struct veil_pipeline *p,
                            const struct veil_source *src) {
        int rc = ensure_room(p);
        if (rc) {
                snprintf(p->add_err, sizeof(p->add_err),
                         "out of memory growing the batch");
                return rc;
        }
        struct veil_event *ev = &p->batch.events[p->batch.n];
        char err[512];
        rc = veil_codec_decode_event(p->in_codec, src->value, src->value_len,
                                     ev, &p->arena, err, sizeof(err));
        /* Out of memory is no fault of the record: dead-lettered, a valid
         * event would leave the stream. The batch fails instead (not
         * committed, read again after the restart). A record too large
         * ever to fit is a decode error (codec.c, arena_refused). */
        if (rc == -VEIL_ENOMEM) {
                snprintf(p->add_err, sizeof(p->add_err),
                         "decoding the record at %s[%d]@%lld: %s",
                         src->topic ? src->topic : "?", (int)src->partition,
                         (long long)src->offset, err);
                return rc;
        }
        const char *bad = rc ? err : event_invalid(ev, err, sizeof(err));
        if (bad) {
                p->decode_errors++;
                rc = dead_letter(p, src, "decode", bad);
                if (rc)
                        snprintf(p->add_err, sizeof(p->add_err),
                                 "cannot produce a dead letter (code %d)",
                                 rc);
                return rc ? rc : 0;
        }
        set_subject(p, ev);
        p->impl.src[p->batch.n] = *src;
        p->batch.n++;
        p->events_in++;
        return 1;
}

/* The event's other strings, which Kafka's decoder checks as it reads
 * them and an event handed in (a CSV replay) has not had checked: a
 * Latin-1 country would reach every output encoder as it is. NULL or why,
 * naming the field. */
static const char *text_invalid(const struct veil_event *ev, char *buf,
                                size_t size) {
        const struct {
                const char *name, *v;
        } f[] = {{"type", ev->type},
                 {"tc_string", ev->tc_string},
                 {"context.device", ev->ctx.device},
                 {"context.ip", ev->ctx.ip},
                 {"context.user_agent", ev->ctx.user_agent},
                 {"context.geohash", ev->ctx.geohash},
                 {"context.country", ev->ctx.country},
                 {"context.timezone", ev->ctx.timezone}};
        const char *name = NULL;
        for (size_t i = 0; i < sizeof(f) / sizeof(f[0]) && !name; i++)
                if (f[i].v && !veil_utf8_valid(f[i].v, strlen(f[i].v)))
                        name = f[i].name;
        for (size_t i = 0; i < ev->ctx.n_attrs && !name; i++) {
                const struct veil_kv *kv = &ev->ctx.attrs[i];
                if ((kv->key && !veil_utf8_valid(kv->key, strlen(kv->key))) ||
                    (kv->value &&
                     !veil_utf8_valid(kv->value, strlen(kv->value))))
                        name = "context.attrs";
        }
        if (!name)
                return NULL;
        snprintf(buf, size, "field '%s' is not valid UTF-8", name);
        return buf;
}

int veil_pipeline_batch_add_event(struct veil_pipeline *p,
                                  const struct veil_event *in) {
        char err[256];
        const char *bad = event_invalid(in, err, sizeof(err));
        if (!bad)
                bad = text_invalid(in, err, sizeof(err));
        if (bad) {
                /* No record bytes: the dead letter says why only. */
                static const struct veil_source none;
                p->decode_errors++;
                int rc = dead_letter(p, &none, "decode", bad);
                return rc ? rc : 0;
        }
        int rc = ensure_room(p);
        if (rc)
                return rc;
        struct veil_batch *b = &p->batch;
        struct veil_event *ev = &b->events[b->n];
        *ev = *in;
        ev->event_id = batch_strdup(b, in->event_id);
        ev->user_id = batch_strdup(b, in->user_id);
        ev->type = batch_strdup(b, in->type);
        ev->item_id = batch_strdup(b, in->item_id);
        ev->tc_string = batch_strdup(b, in->tc_string);
        ev->ctx.device = batch_strdup(b, in->ctx.device);
        ev->ctx.ip = batch_strdup(b, in->ctx.ip);
        ev->ctx.user_agent = batch_strdup(b, in->ctx.user_agent);
        ev->ctx.geohash = batch_strdup(b, in->ctx.geohash);
        ev->ctx.country = batch_strdup(b, in->ctx.country);
        ev->ctx.session_id = batch_strdup(b, in->ctx.session_id);
        ev->ctx.timezone = batch_strdup(b, in->ctx.timezone);
        ev->ctx.attrs = NULL;
        if (in->ctx.n_attrs) {
                ev->ctx.attrs = batch_alloc(
                        b, in->ctx.n_attrs * sizeof(struct veil_kv));
                if (!ev->ctx.attrs)
                        return -VEIL_ENOMEM;
                for (size_t i = 0; i < in->ctx.n_attrs; i++) {
                        ev->ctx.attrs[i].key =
                                batch_strdup(b, in->ctx.attrs[i].key);
                        ev->ctx.attrs[i].value =
                                batch_strdup(b, in->ctx.attrs[i].value);
                }
        }
        ev->status = VEIL_PASS;
        set_subject(p, ev);
        memset(&p->impl.src[b->n], 0, sizeof(struct veil_source));
        b->n++;
        p->events_in++;
        return 1;
}

static void count_drop(struct veil_pipeline *p, const char *reason) {
        for (size_t i = 0; i < p->n_drops; i++) {
                if (!strcmp(p->drops[i].reason, reason)) {
                        p->drops[i].count++;
                        return;
                }
        }
        /* Reasons are a small fixed vocabulary of the plugins; past the cap
         * they are folded so a plugin cannot grow the table without bound. */
        if (p->n_drops == MAX_DROP_REASONS - 1)
                reason = "other";
        if (p->n_drops < MAX_DROP_REASONS) {
                p->drops[p->n_drops].reason = strdup(reason);
                p->drops[p->n_drops].count = 1;
                p->n_drops++;
        } else {
                p->drops[MAX_DROP_REASONS - 1].count++;
        }
}

int veil_pipeline_batch_run(struct veil_pipeline *p, char *errstr,
                            size_t errstr_size) {
        struct veil_batch *b = &p->batch;
        for (size_t s = 0; s < p->n_stages; s++) {
                struct veil_stage *st = &p->stages[s];
                /* Statuses only ever leave PASS, so what this stage
                 * dropped is the difference of the counts (two stages of
                 * one plugin share the name that ev->stage points to). */
                uint64_t in = 0, dropped0 = 0, dead0 = 0;
                for (size_t i = 0; i < b->n; i++) {
                        in += b->events[i].status == VEIL_PASS;
                        dropped0 += b->events[i].status == VEIL_DROP;
                        dead0 += b->events[i].status == VEIL_DEAD_LETTER;
                }
                st->stats.in += in;
                p->impl.cur_stage = st->h.def->name;
                p->impl.refused = 0;
                p->impl.tied = NULL;
                p->impl.n_tied = p->impl.cap_tied = 0;
                p->impl.left_api = 0;
                p->impl.in_process = 1;
                struct veil_pipeline *was = veil_pipeline_enter(p);
                int rc = st->h.def->process(st->state, b);
                veil_pipeline_leave(was);
                p->impl.in_process = 0;
                uint64_t out = 0, dropped = 0, dead = 0;
                for (size_t i = 0; i < b->n; i++) {
                        struct veil_event *ev = &b->events[i];
                        /* A stage may set the status itself (the fields
                         * are the stages'), without a reason: the drop
                         * counts and the dead letter's headers need one. */
                        if (ev->status != VEIL_PASS && !ev->reason)
                                ev->reason = "unspecified";
                        if (ev->status != VEIL_PASS && !ev->stage)
                                ev->stage = st->h.def->name;
                        out += ev->status == VEIL_PASS;
                        dropped += ev->status == VEIL_DROP;
                        dead += ev->status == VEIL_DEAD_LETTER;
                }
                /* A refused record of veil_out_event is answered by its own
                 * event alone. */
                size_t tied_left = 0, tied_pass = 0;
                for (size_t i = 0; i < p->impl.n_tied; i++) {
                        int still = p->impl.tied[i]->status == VEIL_PASS;
                        tied_pass += still;
                        tied_left += !still;
                }
                /* An event whose status the stage set by hand (the fields
                 * are the stages') answers an earlier refusal of a record
                 * not tied to an event, as the API would: those are the
                 * ones that left the stream neither through it nor as a
                 * refused record's own. */
                size_t left = in > out ? (size_t)(in - out) : 0;
                size_t by_hand = left > p->impl.left_api + tied_left
                                         ? left - p->impl.left_api - tied_left
                                         : 0;
                p->impl.refused -= by_hand < p->impl.refused
                                           ? by_hand
                                           : p->impl.refused;
                p->impl.refused += tied_pass;
                if (rc < 0) {
                        st->stats.errors++;
                        snprintf(errstr, errstr_size,
                                 "stage %zu (%s) failed on a batch of %zu "
                                 "events (code %d); the batch is not "
                                 "committed",
                                 s + 1, st->h.def->name, b->n, rc);
                        return rc;
                }
                if (p->impl.refused) {
                        /* The stage ignored a refusal: committing the
                         * batch would lose that record. */
                        st->stats.errors++;
                        snprintf(errstr, errstr_size,
                                 "stage %zu (%s) went on after %llu of its "
                                 "records could not be written (refused as "
                                 "too large, or not encodable), without "
                                 "dead-lettering (or dropping) the event of "
                                 "each; the batch is not committed. First: "
                                 "%s",
                                 s + 1, st->h.def->name,
                                 (unsigned long long)p->impl.refused,
                                 p->impl.refused_why);
                        return -VEIL_EIO;
                }
                st->stats.out += out;
                st->stats.dropped += dropped > dropped0 ? dropped - dropped0 : 0;
                st->stats.dead_letters += dead > dead0 ? dead - dead0 : 0;
                for (const char *const *o = st->h.def->outputs; o && *o; o++) {
                        struct veil_output *op = find_output(p, *o);
                        if (op && op->open) {
                                /* A record begun and never emitted is
                                 * dropped here rather than leaked into the
                                 * next one. */
                                op->open = 0;
                        }
                }
        }
        p->impl.cur_stage = NULL;
        for (size_t i = 0; i < b->n; i++) {
                struct veil_event *ev = &b->events[i];
                /* Dropped events keep the tier that got them dropped. */
                if (ev->status != VEIL_DEAD_LETTER &&
                    (unsigned)ev->tier <= VEIL_TIER_PERSONALIZED)
                        p->tiers[ev->tier]++;
                if (ev->status == VEIL_DROP) {
                        count_drop(p, ev->reason);
                } else if (ev->status == VEIL_DEAD_LETTER) {
                        const struct veil_source *src = &p->impl.src[i];
                        int rc = dead_letter(p, src, ev->stage, ev->reason);
                        if (rc) {
                                snprintf(errstr, errstr_size,
                                         "dead-letter output failed (code "
                                         "%d)",
                                         rc);
                                return rc;
                        }
                }
        }
        return 0;
}

int veil_pipeline_side_record(struct veil_pipeline *p, size_t side,
                              const struct veil_source *src, char *errstr,
                              size_t errstr_size) {
        struct veil_side *sd = &p->sides[side];
        const veil_rec_t *rec = NULL;
        char err[512];
        if (src->value) {
                int rc = veil_codec_decode_rec(sd->codec, src->value,
                                               src->value_len, &rec, err,
                                               sizeof(err));
                /* Out of memory: not the record's fault, and a consent
                 * withdrawal dead-lettered for it would be lost. The host
                 * stops; side inputs are read from the start again. */
                if (rc == -VEIL_ENOMEM) {
                        snprintf(errstr, errstr_size,
                                 "decoding the record at %s[%d]@%lld: %s",
                                 src->topic ? src->topic : "?",
                                 (int)src->partition, (long long)src->offset,
                                 err);
                        return rc;
                }
                if (rc) {
                        p->decode_errors++;
                        rc = dead_letter(p, src, "decode", err);
                        if (rc)
                                snprintf(errstr, errstr_size,
                                         "dead-letter output failed (code "
                                         "%d)",
                                         rc);
                        return rc;
                }
        }
        struct veil_side_record r = {sd->b->name,       src->key,
                                     src->key_len,      rec,
                                     src->timestamp_ms, src->partition,
                                     src->offset};
        for (size_t s = 0; s < p->n_stages; s++) {
                struct veil_stage *st = &p->stages[s];
                const struct veil_plugin *def = st->h.def;
                if (!def->on_side_record || !st->inited)
                        continue;
                if (!plugin_reads_side(def, sd->b->name))
                        continue;
                err[0] = '\0';
                struct veil_pipeline *was = veil_pipeline_enter(p);
                int rc = def->on_side_record(st->state, &r, err, sizeof(err));
                veil_pipeline_leave(was);
                /* Out of memory, as in decoding above: the record is not
                 * at fault, and dead-lettered it would be missing until
                 * the next start (a consent withdrawal, a model update).
                 * The host stops and reads the side inputs again. */
                if (rc == -VEIL_ENOMEM) {
                        st->stats.errors++;
                        snprintf(errstr, errstr_size,
                                 "stage %zu (%s), the record at %s[%d]@%lld: "
                                 "%s",
                                 s + 1, def->name,
                                 src->topic ? src->topic : "?",
                                 (int)src->partition, (long long)src->offset,
                                 err[0] ? err : "out of memory");
                        return rc;
                }
                if (rc) {
                        st->stats.errors++;
                        /* A record the plugin rejects changes nothing and is
                         * kept for inspection. */
                        char msg[600];
                        snprintf(msg, sizeof(msg), "%s",
                                 err[0] ? err : "rejected");
                        rc = dead_letter(p, src, def->name, msg);
                        if (rc) {
                                snprintf(errstr, errstr_size,
                                         "dead-letter output failed (code "
                                         "%d)",
                                         rc);
                                return rc;
                        }
                }
        }
        /* The erasures are otherwise applied when the next batch begins,
         * and while the side inputs catch up no batch begins: a consent
         * topic of millions of tombstones would queue millions of ids.
         * Side records come between batches, so applying them here is
         * what the next batch_begin would do, only sooner. Not the access
         * requests: answered now, before the ledger has caught up, they
         * could miss a person's consent read later; they are few, and
         * wait for the batch. */
        if (p->n_erase >= REQUESTS_HELD_MAX)
                apply_erasures(p);
        /* Unless they are not few: a topic that keeps them (keyed by
         * request id, compaction removes none) may hold more than memory
         * should. Past the bound they are answered now, as the next
         * batch_begin would (before the erasures held with them), and the
         * log says so once. */
        if (p->n_export >= REQUESTS_HELD_MAX) {
                if (!p->exports_early_warned)
                        veil_log_host(VEIL_LOG_WARN, NULL,
                                      "over %d access requests waited for "
                                      "the side inputs to catch up: they "
                                      "are answered before the catch-up "
                                      "ends, with the consent records read "
                                      "so far",
                                      REQUESTS_HELD_MAX);
                p->exports_early_warned = 1;
                apply_exports(p);
                apply_erasures(p);
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* Introspection                                                      */
/* ------------------------------------------------------------------ */

const struct veil_config *veil_pipeline_config(const struct veil_pipeline *p) {
        return p->cfg;
}
size_t veil_pipeline_n_stages(const struct veil_pipeline *p) {
        return p->n_stages;
}
const char *veil_pipeline_add_error(const struct veil_pipeline *p) {
        return p->add_err;
}

const char *veil_pipeline_stage_name(const struct veil_pipeline *p, size_t i) {
        return p->stages[i].h.def->name;
}
const struct veil_plugin *veil_pipeline_stage_plugin(
        const struct veil_pipeline *p, size_t i) {
        return p->stages[i].h.def;
}
void *veil_pipeline_stage_state(struct veil_pipeline *p, size_t i) {
        return p->stages[i].state;
}
struct veil_stage_stats veil_pipeline_stage_stats(const struct veil_pipeline *p,
                                                  size_t i) {
        return p->stages[i].stats;
}
uint64_t veil_pipeline_events_in(const struct veil_pipeline *p) {
        return p->events_in;
}
uint64_t veil_pipeline_decode_errors(const struct veil_pipeline *p) {
        return p->decode_errors;
}
uint64_t veil_pipeline_dead_letters(const struct veil_pipeline *p) {
        return p->dead_letters;
}
uint64_t veil_pipeline_output_count(const struct veil_pipeline *p,
                                    const char *output) {
        for (size_t i = 0; i < p->n_outputs; i++)
                if (!strcmp(p->outputs[i].b->name, output))
                        return p->outputs[i].count;
        return 0;
}
size_t veil_pipeline_n_drop_reasons(const struct veil_pipeline *p) {
        return p->n_drops;
}
const char *veil_pipeline_drop_reason(const struct veil_pipeline *p, size_t i,
                                      uint64_t *count) {
        *count = p->drops[i].count;
        return p->drops[i].reason;
}
uint64_t veil_pipeline_tier_count(const struct veil_pipeline *p,
                                  veil_tier_t tier) {
        return (unsigned)tier <= VEIL_TIER_PERSONALIZED ? p->tiers[tier] : 0;
}
uint64_t veil_pipeline_training_erasures(const struct veil_pipeline *p) {
        return p->training_erasures;
}
uint64_t veil_pipeline_erasures(const struct veil_pipeline *p, double *max_ms,
                                double *mean_ms) {
        if (max_ms)
                *max_ms = p->erase_max_ms;
        if (mean_ms)
                *mean_ms = p->erasures ? p->erase_sum_ms / (double)p->erasures
                                       : 0.0;
        return p->erasures;
}
/* Several stages that spend privacy on the same people compose: their ε
 * and δ add (basic composition, loose but never an under-report). */
void veil_pipeline_privacy_spent(const struct veil_pipeline *p, double *eps,
                                 double *delta) {
        double e = 0, d = 0;
        for (size_t i = 0; i < p->n_stages; i++)
                if (p->stages[i].has_spent) {
                        e += p->stages[i].eps_spent;
                        d += p->stages[i].delta_spent;
                }
        if (e < p->eps_floor) {
                e = p->eps_floor;
                d = p->delta_floor;
        }
        *eps = e;
        *delta = d;
}
int veil_pipeline_privacy_budget(const struct veil_pipeline *p, double *eps,
                                 double *delta) {
        double e = 0, d = 0;
        int has = 0;
        for (size_t i = 0; i < p->n_stages; i++)
                if (p->stages[i].has_budget) {
                        e += p->stages[i].eps_budget;
                        d += p->stages[i].delta_budget;
                        has = 1;
                }
        *eps = e;
        *delta = d;
        return has;
}
size_t veil_pipeline_stage_n_gauges(const struct veil_pipeline *p, size_t i) {
        return p->stages[i].n_gauges;
}
const char *veil_pipeline_stage_gauge(const struct veil_pipeline *p, size_t i,
                                      size_t j, double *value) {
        *value = p->stages[i].gauges[j].value;
        return p->stages[i].gauges[j].name;
}

/* The n-th stage running `def->name` in `p`, or NULL. */
static struct veil_stage *same_stage(struct veil_pipeline *p, const char *name,
                                     size_t nth) {
        for (size_t i = 0; i < p->n_stages; i++)
                if (!strcmp(p->stages[i].h.def->name, name) && nth-- == 0)
                        return &p->stages[i];
        return NULL;
}

/* The gauges of `f` that `t` has not set (a restore may set its own) go to
 * `t`, whose state `f`'s became: they describe that state. Left behind,
 * /metrics lost them at a reload until the new stage's first batch, which
 * waits for the side inputs to be read again (on an idle instance,
 * indefinitely); the new stage updates them from then on. */
static void take_gauges(struct veil_stage *t, const struct veil_stage *f) {
        for (size_t j = 0; j < f->n_gauges && t->n_gauges < MAX_STAGE_GAUGES;
             j++) {
                size_t k = 0;
                while (k < t->n_gauges &&
                       strcmp(t->gauges[k].name, f->gauges[j].name))
                        k++;
                if (k == t->n_gauges)
                        t->gauges[t->n_gauges++] = f->gauges[j];
        }
}

#define SWAP(a, b)                                                             \
        do {                                                                   \
                __typeof__(a) t_ = (a);                                        \
                (a) = (b);                                                     \
                (b) = t_;                                                      \
        } while (0)

/* The erase and access requests queued since the last batch began (side
 * records read between batches) are applied when the next batch begins:
 * with a reload, by the new pipeline, which holds the state by then. Left
 * with the old one they were freed unapplied, and the person's data went
 * on in the new stages. The queues are swapped: `to`'s (a new
 * pipeline's, empty) go with `from`, and a reload that fails after the
 * transfer takes them back the same way. */
void veil_pipeline_take_requests(struct veil_pipeline *to,
                                 struct veil_pipeline *from) {
        SWAP(to->erase_queue, from->erase_queue);
        SWAP(to->n_erase, from->n_erase);
        SWAP(to->cap_erase, from->cap_erase);
        SWAP(to->erase_only, from->erase_only);
        SWAP(to->erase_at, from->erase_at);
        SWAP(to->export_queue, from->export_queue);
        SWAP(to->n_export, from->n_export);
        SWAP(to->cap_export, from->cap_export);
}

int veil_pipeline_transfer(struct veil_pipeline *to,
                           struct veil_pipeline *from, char *errstr,
                           size_t errstr_size) {
        for (size_t i = 0; i < to->n_stages; i++) {
                struct veil_stage *t = &to->stages[i];
                size_t nth = 0; /* earlier stages running the same plugin */
                for (size_t j = 0; j < i; j++)
                        nth += !strcmp(to->stages[j].h.def->name,
                                       t->h.def->name);
                struct veil_stage *f = same_stage(from, t->h.def->name, nth);
                if (!f || !f->inited || !t->inited ||
                    !f->h.def->checkpoint || !t->h.def->restore)
                        continue;
                void *data = NULL;
                size_t len = 0;
                struct veil_pipeline *was = veil_pipeline_enter(from);
                int rc = f->h.def->checkpoint(f->state, &data, &len);
                veil_pipeline_leave(was);
                if (rc) {
                        snprintf(errstr, errstr_size,
                                 "stage %zu (%s): checkpoint of the running "
                                 "state failed (code %d)",
                                 i + 1, t->h.def->name, rc);
                        free(data);
                        return rc < 0 ? rc : -VEIL_ESTATE;
                }
                char err[1024] = "";
                was = veil_pipeline_enter(to);
                rc = t->h.def->restore(t->state, data, len, err, sizeof(err));
                veil_pipeline_leave(was);
                free(data);
                if (rc) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d:%d: stage %zu (%s) cannot take over "
                                 "the running state: %s",
                                 to->cfg->file, t->cfg->line, t->cfg->col,
                                 i + 1, t->h.def->name,
                                 err[0] ? err : "(no message)");
                        return rc < 0 ? rc : -VEIL_ESTATE;
                }
                take_gauges(t, f);
        }
        /* What was spent stays spent until the new stages report more. */
        veil_pipeline_privacy_spent(from, &to->eps_floor, &to->delta_floor);
        veil_pipeline_take_requests(to, from);
        return 0;
}
struct veil_codec *veil_pipeline_input_codec(struct veil_pipeline *p) {
        return p->in_codec;
}
const veil_params_t *veil_pipeline_stage_params(const struct veil_pipeline *p,
                                                size_t i) {
        return p->stages[i].params;
}
const struct veil_stage_cfg *veil_pipeline_stage_cfg(
        const struct veil_pipeline *p, size_t i) {
        return p->stages[i].cfg;
}
struct veil_codec *veil_pipeline_output_codec(struct veil_pipeline *p,
                                              const char *output) {
        struct veil_output *o = find_output(p, output);
        return o ? o->codec : NULL;
}
