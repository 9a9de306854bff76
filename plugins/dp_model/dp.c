#include "dp.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <veil/veil.h>

#include "tree.h"

/* The accountant files this process holds. Two holders of one file
 * would each count only their own releases, and each save overwrites the
 * other's: the file would say the larger spend, not the sum. So while a
 * stage uses accountant_file it holds a lock (flock) on a file beside it,
 * accountant_file + ".lock", which is never renamed: the accountant file
 * itself is created (and an older veil's one-record file replaced) by
 * renaming a temporary file over it, and a lock on the inode it replaced
 * would guard nothing. The lock is taken before the file is read, so two
 * processes starting at once cannot both create it. The accountant file
 * is locked too, after the load, for an older veil that locks only it.
 * A reload, whose new stage opens the file while the old one still runs,
 * shares the locks; two stages of one pipeline may not (owner). Stages
 * are created and freed on the host's main thread. */
#define LOCK_OWNERS 4
static struct acc_lock {
        dev_t dev;
        ino_t ino;
        int fd, data_fd, refs;
        uint64_t owner[LOCK_OWNERS]; /* of each holder; 0: not checked */
} locks[16];

static int flock_now(int fd) {
        int rc;
        do
                rc = flock(fd, LOCK_EX | LOCK_NB);
        while (rc < 0 && errno == EINTR);
        return rc;
}

static int in_use(const char *path, int e, char *errstr, size_t errstr_size) {
        snprintf(errstr, errstr_size,
                 "dp_model: accountant_file '%s' is in use by another "
                 "process%s: two pipelines on one file would each count "
                 "only their own releases; give each its own accountant_file",
                 path, e == EWOULDBLOCK ? "" : " (cannot lock it)");
        return -VEIL_EINVAL;
}

/* Takes path's ".lock" for owner; *out is then held. */
static int lock_file(const char *path, uint64_t owner, struct acc_lock **out,
                     char *errstr, size_t errstr_size) {
        struct stat st;
        size_t l = strlen(path);
        char *lp = malloc(l + sizeof(".lock"));
        if (!lp)
                return -VEIL_ENOMEM;
        memcpy(lp, path, l);
        memcpy(lp + l, ".lock", sizeof(".lock"));
        int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || fstat(fd, &st) < 0) {
                snprintf(errstr, errstr_size,
                         "dp_model: accountant_file: cannot open its lock "
                         "file %s: %s (is its directory there and "
                         "writable?)",
                         lp, strerror(errno));
                free(lp);
                if (fd >= 0)
                        close(fd);
                return -VEIL_EIO;
        }
        free(lp);
        struct acc_lock *free_slot = NULL;
        for (size_t i = 0; i < sizeof(locks) / sizeof(*locks); i++) {
                struct acc_lock *k = &locks[i];
                if (k->refs && k->dev == st.st_dev && k->ino == st.st_ino) {
                        close(fd);
                        size_t at = LOCK_OWNERS;
                        for (size_t j = 0; j < LOCK_OWNERS; j++) {
                                if (owner && k->owner[j] == owner) {
                                        snprintf(errstr, errstr_size,
                                                 "dp_model: accountant_file "
                                                 "'%s' is given to two "
                                                 "dp_model stages of this "
                                                 "pipeline: each would count "
                                                 "only its own releases; give "
                                                 "each its own accountant_file",
                                                 path);
                                        return -VEIL_EINVAL;
                                }
                                if (!k->owner[j] && at == LOCK_OWNERS)
                                        at = j;
                        }
                        if (owner && at == LOCK_OWNERS) {
                                snprintf(errstr, errstr_size,
                                         "dp_model: accountant_file '%s' is "
                                         "held by %d stages already",
                                         path, k->refs);
                                return -VEIL_EINVAL;
                        }
                        if (owner)
                                k->owner[at] = owner;
                        k->refs++;
                        *out = k;
                        return 0;
                }
                if (!k->refs && !free_slot)
                        free_slot = k;
        }
        if (!free_slot) {
                close(fd);
                snprintf(errstr, errstr_size,
                         "dp_model: more than %zu accountant files in one "
                         "process", sizeof(locks) / sizeof(*locks));
                return -VEIL_EINVAL;
        }
        if (flock_now(fd) < 0) {
                int e = errno;
                close(fd);
                return in_use(path, e, errstr, errstr_size);
        }
        *free_slot = (struct acc_lock){st.st_dev, st.st_ino, fd, -1, 1, {owner}};
        *out = free_slot;
        return 0;
}

/* The accountant file itself, once it exists (loaded or created). */
static int lock_data(struct acc_lock *k, const char *path, char *errstr,
                     size_t errstr_size) {
        if (k->data_fd >= 0)
                return 0; /* a reload's predecessor holds it */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                snprintf(errstr, errstr_size,
                         "dp_model: accountant_file '%s': %s", path,
                         strerror(errno));
                return -VEIL_EIO;
        }
        if (flock_now(fd) < 0) {
                int e = errno;
                close(fd);
                return in_use(path, e, errstr, errstr_size);
        }
        k->data_fd = fd;
        return 0;
}

static void unlock_file(struct acc_lock *k, uint64_t owner) {
        if (!k)
                return;
        for (size_t j = 0; owner && j < LOCK_OWNERS; j++)
                if (k->owner[j] == owner) {
                        k->owner[j] = 0;
                        break;
                }
        if (--k->refs == 0) {
                if (k->data_fd >= 0)
                        close(k->data_fd);
                close(k->fd); /* releases the flocks */
                k->fd = k->data_fd = -1;
        }
}

/* One user's counters in the current accounting window. Slots of older
 * windows count as free: within a window nothing is deleted, so a probe
 * chain of current slots is never broken by a stale one. */
struct uslot {
        uint64_t h;
        uint64_t window; /* window + 1; 0: never used */
        uint64_t step;   /* the DP step the user last joined */
        uint64_t batch;  /* the serving batch of that contribution */
        uint32_t count;  /* steps joined in the window */
        uint32_t prev;   /* also joined step − 1 (event time: two steps are
                          * open to one user at once) */
};

struct veil_dp {
        struct veil_dp_cfg cfg;
        char *path;
        struct veil_accountant *acc;
        int draws_unsaved; /* a raised rate whose save failed */
        struct veil_noise *ns;
        struct veil_rng_stream rs;
        struct veil_rng rng;
        unsigned char hkey[crypto_shorthash_KEYBYTES];
        struct uslot *tab;
        size_t cap, used;
        uint64_t used_window;
        size_t d, space, items_cap;
        size_t items_seen; /* item rows the sums may hold: those past it
                            * are zero, so clear() leaves them */
        /* The step's clipped sum, in double: adding the batches' sums in
         * float would round each by 2⁻²⁴ of the whole step's, which
         * another person's events change (veil_learner_double_sums). */
        double *V, *U, *E, *b;
        float *oV, *oU, *oE, *ob; /* the noisy sum released */
        /* Rows the step's contributions touched (b's are V's), and row
         * pointers for the release: a touched row's sum, NULL for the
         * others (zero: noise alone, and nothing to read or to clear). */
        unsigned char *tV, *tU, *tE;
        double **pV, **pU, **pE, **pb;
        int consumed; /* the release zeroed the touched rows as it read */
        /* Contributions admitted to the open step and the next (step + 1,
         * 0: none yet), against VEIL_DP_STEP_MAX. */
        struct {
                uint64_t step, n;
        } adm[2];
        struct veil_tree *tree; /* tree: the aggregator's node keys */
        struct acc_lock *lock;  /* held on accountant_file */
        /* Steps on the clock: the open step's number (clock / step_ms);
         * when the clock has passed it, due is set and next_step is the
         * step the latest batch is in, which opens once it is released. */
        int has_open, due;
        int64_t open_step, next_step;
        /* Event time: a batch came in the time of the step after the open
         * one (within the open one's lateness), so that step is released
         * too, not skipped: it may hold events. clock_step and clock_own:
         * the step the latest due batch is in (its clock less the
         * lateness) and the one its own time is in. */
        int next_seen;
        int64_t clock_step, clock_own;
        struct veil_dp_stats st;
};

/* n zeroed elements of `size` bytes, 64-byte aligned (whole cache lines
 * for the row loops). */
static void *zalloc(size_t n, size_t size) {
        void *p = NULL;
        if (posix_memalign(&p, 64, (n ? n : 1) * size))
                return NULL;
        memset(p, 0, (n ? n : 1) * size);
        return p;
}

void veil_dp_free(struct veil_dp *dp) {
        if (!dp)
                return;
        unlock_file(dp->lock, dp->cfg.owner);
        veil_accountant_free(dp->acc);
        veil_noise_free(dp->ns);
        veil_tree_free(dp->tree);
        veil_rng_stream_wipe(&dp->rs);
        sodium_memzero(dp->hkey, sizeof(dp->hkey));
        free(dp->tab);
        free(dp->V);
        free(dp->U);
        free(dp->E);
        free(dp->b);
        free(dp->oV);
        free(dp->oU);
        free(dp->oE);
        free(dp->ob);
        free(dp->tV);
        free(dp->tU);
        free(dp->tE);
        free(dp->pV);
        free(dp->pU);
        free(dp->pE);
        free(dp->pb);
        free(dp->path);
        free(dp);
}

double veil_dp_epsilon_of(const struct veil_dp *dp, double rho) {
        double eps;
        char err[128];
        return veil_dp_epsilon_sampled(rho, dp->cfg.delta,
                                       veil_accountant_draws_per_rho(dp->acc),
                                       &eps, err, sizeof(err))
                       ? INFINITY
                       : eps;
}

static void update_epsilon(struct veil_dp *dp) {
        dp->st.rho_own = veil_accountant_rho(dp->acc);
        dp->st.steps = veil_accountant_steps(dp->acc);
        dp->st.epsilon_own = veil_dp_epsilon_of(dp, dp->st.rho_own);
        dp->st.rho = dp->st.rho_own;
        dp->st.epsilon = dp->st.epsilon_own;
        if (dp->st.rho_others > 0) { /* zCDP composes by adding ρ */
                dp->st.rho = nextafter(dp->st.rho + dp->st.rho_others,
                                       INFINITY);
                dp->st.epsilon = veil_dp_epsilon_of(dp, dp->st.rho);
        }
}

int veil_dp_raise_draws(struct veil_dp *dp, double draws, char *errstr,
                        size_t errstr_size) {
        int rc = veil_accountant_raise_draws(dp->acc, draws, errstr,
                                             errstr_size);
        if (rc < 0)
                return rc;
        if (rc == 1) {
                dp->draws_unsaved = 1;
                update_epsilon(dp);
        }
        if (dp->draws_unsaved) {
                if ((rc = veil_accountant_save(dp->acc, dp->path, errstr,
                                               errstr_size)))
                        return rc;
                dp->draws_unsaved = 0;
        }
        return 0;
}

void veil_dp_set_others(struct veil_dp *dp, double rho) {
        if (!(rho > dp->st.rho_others)) /* it never goes down */
                return;
        dp->st.rho_others = rho;
        update_epsilon(dp);
}

/* The tree's node keys are not saved (tree.h): after a restart or a
 * restore, the next step opens a tree the accountant has not seen, which
 * it charges as a new one; users may join it once. */
static void new_tree_after_restart(struct veil_dp *dp) {
        uint64_t unit;
        if (!dp->tree)
                return;
        veil_tree_reset(dp->tree);
        if (veil_accountant_unit(dp->acc, &unit) && unit + 1 > dp->st.tree)
                dp->st.tree = unit + 1;
}

int veil_dp_new(struct veil_dp **out, const struct veil_dp_cfg *cfg,
                const struct veil_model *m, char *errstr, size_t errstr_size) {
        *out = NULL;
        int tree = cfg->mode == VEIL_DP_MODE_TREE;
        if (tree && !cfg->tree_steps) {
                snprintf(errstr, errstr_size,
                         "dp_model: the tree mechanism needs tree_steps ≥ 1");
                return -VEIL_EINVAL;
        }
        if (!(cfg->sigma > 0 && isfinite(cfg->sigma)) || !(cfg->clip > 0) ||
            !cfg->step_events || !cfg->max_contrib ||
            cfg->step_ms < 0 || cfg->lateness_ms < 0 ||
            (cfg->event_time &&
             (!cfg->step_ms || cfg->lateness_ms >= cfg->step_ms)) ||
            !cfg->acc_path || !*cfg->acc_path ||
            !(cfg->delta > 0 && cfg->delta < 1)) {
                snprintf(errstr, errstr_size,
                         "dp_model: the %s mechanism needs ",
                         tree ? "tree" : "gaussian");
                size_t o = strlen(errstr);
                snprintf(errstr + o, errstr_size > o ? errstr_size - o : 0,
                         "noise_multiplier > 0, clip_norm > 0, step_size, "
                         "max_contributions ≥ 1, delta in "
                         "(0, 1), an accountant_file and, with event time, "
                         "steps on the clock longer than the lateness");
                return -VEIL_EINVAL;
        }
        if (sodium_init() < 0) {
                snprintf(errstr, errstr_size, "dp_model: libsodium failed");
                return -VEIL_EIO;
        }
        struct veil_dp *dp = calloc(1, sizeof(*dp));
        if (!dp)
                return -VEIL_ENOMEM;
        dp->cfg = *cfg; /* tree: the tree is the window of max_contrib */
        dp->path = strdup(cfg->acc_path);
        dp->cfg.acc_path = dp->path;
        dp->d = m->d;
        dp->space = m->space;
        dp->items_cap = m->cap;
        dp->cap = 64;
        while (dp->cap < cfg->user_slots)
                dp->cap *= 2;
        dp->tab = calloc(dp->cap, sizeof(*dp->tab));
        dp->st.user_slots = dp->cap;
        dp->V = zalloc(m->cap * m->d, sizeof(double));
        dp->U = zalloc(m->cap * m->d, sizeof(double));
        dp->E = zalloc(m->space * m->d, sizeof(double));
        dp->b = zalloc(m->cap, sizeof(double));
        dp->oV = zalloc(m->cap * m->d, sizeof(float));
        dp->oU = zalloc(m->cap * m->d, sizeof(float));
        dp->oE = zalloc(m->space * m->d, sizeof(float));
        dp->ob = zalloc(m->cap, sizeof(float));
        size_t rows = m->cap ? m->cap : 1, srows = m->space ? m->space : 1;
        dp->tV = calloc(rows, 1);
        dp->tU = calloc(rows, 1);
        dp->tE = calloc(srows, 1);
        dp->pV = calloc(rows, sizeof(double *));
        dp->pU = calloc(rows, sizeof(double *));
        dp->pE = calloc(srows, sizeof(double *));
        dp->pb = calloc(rows, sizeof(double *));
        if (!dp->path || !dp->tab || !dp->V || !dp->U || !dp->E || !dp->b ||
            !dp->oV || !dp->oU || !dp->oE || !dp->ob || !dp->tV || !dp->tU ||
            !dp->tE || !dp->pV || !dp->pU || !dp->pE || !dp->pb) {
                veil_dp_free(dp);
                return -VEIL_ENOMEM;
        }
        randombytes_buf(dp->hkey, sizeof(dp->hkey));
        int rc = veil_rng_stream_init(&dp->rs, cfg->seed, &dp->rng);
        double std = cfg->sigma * cfg->clip;
        if (!rc)
                rc = veil_noise_new(&dp->ns, std, errstr, errstr_size);
        if (!rc && tree)
                rc = veil_tree_new(&dp->tree, dp->ns, cfg->tree_estimator,
                                   cfg->seed, errstr, errstr_size);
        if (rc) {
                veil_dp_free(dp);
                return rc;
        }
        /* Rounding to the noise grid moves each of the n coordinates by
         * less than g/2, and summing in double moves the step's sum by
         * less than VEIL_DP_SUM_MARGIN·C (dp.h): the sensitivity is at
         * most C·(1 + margin) + g√n. */
        double n = 2.0 * (double)m->cap * (double)m->d +
                   (double)m->space * (double)m->d + (double)m->cap;
        double g = veil_noise_grid(dp->ns);
        dp->st.sigma_acc = std / (cfg->clip * (1.0 + VEIL_DP_SUM_MARGIN) +
                                  g * sqrt(n));
        /* n counts every coordinate a release can noise (the sampler's
         * error, accountant.h), whichever blocks a step releases. */
        struct veil_dp_mech mech = {tree ? VEIL_DP_TREE : VEIL_DP_GAUSSIAN,
                                    dp->st.sigma_acc, dp->cfg.max_contrib,
                                    tree ? cfg->tree_steps : 0, 1,
                                    (uint64_t)ceil(n)};
        rc = veil_accountant_new(&dp->acc, &mech, errstr, errstr_size);
        if (!rc)
                rc = lock_file(dp->path, cfg->owner, &dp->lock, errstr,
                               errstr_size);
        if (!rc) {
                char err[256];
                rc = veil_accountant_load(dp->acc, dp->path, err, sizeof(err));
                if (rc == -VEIL_ENOENT) {
                        /* Created now, so that a path that cannot be
                         * written fails the start, not the first noisy
                         * step minutes later. */
                        rc = veil_accountant_save(dp->acc, dp->path, err,
                                                  sizeof(err));
                        if (rc)
                                snprintf(errstr, errstr_size,
                                         "dp_model: accountant_file: %s (is "
                                         "its directory there and writable?)",
                                         err);
                } else if (rc) {
                        /* A corrupt or unreadable state must stop the
                         * stage: starting from zero would under-report. */
                        snprintf(errstr, errstr_size,
                                 "dp_model: accountant_file: %s", err);
                }
        }
        if (!rc)
                rc = lock_data(dp->lock, dp->path, errstr, errstr_size);
        if (rc) {
                veil_dp_free(dp);
                return rc;
        }
        dp->st.delta = cfg->delta;
        update_epsilon(dp);
        new_tree_after_restart(dp);
        *out = dp;
        return 0;
}

uint64_t veil_dp_step(const struct veil_dp *dp) {
        if (dp->cfg.step_ms)
                return (uint64_t)dp->open_step;
        return veil_accountant_steps(dp->acc);
}


/* The accounting window: a window of window_steps steps (on the clock,
 * window_steps of its steps, released or not; 0: one window), or the
 * tree. */
static uint64_t window_of(const struct veil_dp *dp, uint64_t step) {
        if (dp->tree)
                return dp->st.tree;
        if (!dp->cfg.window_steps)
                return 0;
        return step / dp->cfg.window_steps;
}

static uint64_t current_window(const struct veil_dp *dp) {
        return window_of(dp, veil_dp_step(dp));
}

uint64_t veil_dp_user_hash(const struct veil_dp *dp, const char *user) {
        unsigned char hb[crypto_shorthash_BYTES];
        crypto_shorthash(hb, (const unsigned char *)user, strlen(user),
                         dp->hkey);
        uint64_t h;
        memcpy(&h, hb, sizeof(h));
        return h;
}

uint32_t veil_dp_user_steps(const struct veil_dp *dp, const char *user) {
        uint64_t h = veil_dp_user_hash(dp, user);
        uint64_t win = current_window(dp) + 1;
        for (size_t j = h & (dp->cap - 1);; j = (j + 1) & (dp->cap - 1)) {
                const struct uslot *s = &dp->tab[j];
                if (s->window != win)
                        return 0;
                if (s->h == h)
                        return s->count;
        }
}

void veil_dp_clock(struct veil_dp *dp, int64_t now_ms) {
        if (!dp->cfg.step_ms)
                return;
        /* With event time, a step's batches run lateness_ms past its end,
         * so that events of it that come a little late still join it. */
        int64_t t = now_ms - dp->cfg.lateness_ms;
        int64_t k = (t > 0 ? t : 0) / dp->cfg.step_ms;
        int64_t own = (now_ms > 0 ? now_ms : 0) / dp->cfg.step_ms;
        if (!dp->has_open) {
                /* The first batch (also after a restart) opens its step:
                 * what was pending before a restart is gone with the
                 * process, and steps nobody ran are not released. */
                dp->has_open = 1;
                dp->open_step = k;
                dp->next_seen = own > k;
                return;
        }
        if (k > dp->open_step) {
                /* The open step goes, empty or not. The steps between it
                 * and k had no batch, so nobody's events: they are
                 * skipped (that no event came then is the traffic's
                 * timing, which a release's time shows anyway) — but the
                 * one after the open step is released too when a batch
                 * came in its time (event time: it may hold events). */
                dp->due = 1;
                dp->clock_step = k;
                dp->clock_own = own;
                dp->next_step = dp->next_seen && dp->open_step + 1 < k
                                        ? dp->open_step + 1
                                        : k;
        } else if (own > dp->open_step) {
                dp->next_seen = 1;
        }
}

/* Twice the slots, the current window's entries moved over. A table that
 * refused newcomers once 3/4 full would make one user's admission depend
 * on how many others came first: it grows instead, like the consent
 * ledger, by 40 bytes per user of the window. */
static int grow(struct veil_dp *dp, uint64_t win) {
        size_t cap = dp->cap * 2;
        struct uslot *t = calloc(cap, sizeof(*t));
        if (!t)
                return -VEIL_ENOMEM;
        for (size_t i = 0; i < dp->cap; i++) {
                const struct uslot *s = &dp->tab[i];
                if (s->window != win)
                        continue;
                size_t j = s->h & (cap - 1);
                while (t[j].window == win)
                        j = (j + 1) & (cap - 1);
                t[j] = *s;
        }
        free(dp->tab);
        dp->tab = t;
        dp->cap = cap;
        dp->st.user_slots = cap;
        return 0;
}

static uint64_t step_max(const struct veil_dp *dp) {
        size_t m = dp->cfg.step_max;
        return m && m < VEIL_DP_STEP_MAX ? m : VEIL_DP_STEP_MAX;
}

/* The count of contributions admitted to step t: one of the two kept,
 * or the older one's slot, reset, for a step not seen yet. */
static uint64_t *step_count(struct veil_dp *dp, uint64_t t) {
        for (int i = 0; i < 2; i++)
                if (dp->adm[i].step == t + 1)
                        return &dp->adm[i].n;
        int i = dp->adm[0].step <= dp->adm[1].step ? 0 : 1;
        dp->adm[i].step = t + 1;
        dp->adm[i].n = 0;
        return &dp->adm[i].n;
}

/* Admits the user to step t (the open one, or with event time the next),
 * against one contribution per step, M per window and VEIL_DP_STEP_MAX
 * per step. */
static int admit_at(struct veil_dp *dp, const char *user, uint64_t batch,
                    uint64_t step) {
        if (dp->st.frozen) {
                dp->st.refused_frozen++;
                return 0;
        }
        uint64_t *in_step = step_count(dp, step);
        uint64_t win = current_window(dp) + 1;
        if (dp->used_window != win) {
                dp->used_window = win;
                dp->used = 0;
        }
        uint64_t h = veil_dp_user_hash(dp, user);
        size_t j = h & (dp->cap - 1);
        for (;;) {
                struct uslot *s = &dp->tab[j];
                if (s->window != win)
                        break;
                if (s->h == h) {
                        if (s->step == step + 1) {
                                if (s->batch == batch)
                                        return 1;
                                dp->st.refused_step++;
                                return 0;
                        }
                        /* The step before the user's latest (event time:
                         * a late event of the open step after one of the
                         * next was held), or an older one: once each. */
                        if (s->step > step + 1 &&
                            (s->step != step + 2 || s->prev)) {
                                dp->st.refused_step++;
                                return 0;
                        }
                        if (s->count >= dp->cfg.max_contrib) {
                                dp->st.refused_window++;
                                return 0;
                        }
                        if (*in_step >= step_max(dp)) {
                                dp->st.refused_step_full++;
                                return 0;
                        }
                        ++*in_step;
                        s->count++;
                        if (s->step == step + 2) {
                                s->prev = 1;
                                return 1;
                        }
                        s->prev = s->step == step; /* it was in step − 1 */
                        s->step = step + 1;
                        s->batch = batch;
                        return 1;
                }
                j = (j + 1) & (dp->cap - 1);
        }
        if (*in_step >= step_max(dp)) {
                dp->st.refused_step_full++;
                return 0;
        }
        if (dp->used >= dp->cap / 4 * 3) {
                if (grow(dp, win)) {
                        /* Out of memory: refused, and counted. */
                        dp->st.refused_full++;
                        return 0;
                }
                j = h & (dp->cap - 1);
                while (dp->tab[j].window == win)
                        j = (j + 1) & (dp->cap - 1);
        }
        dp->used++;
        ++*in_step;
        dp->tab[j] = (struct uslot){h, win, step + 1, batch, 1, 0};
        return 1;
}

int veil_dp_admit(struct veil_dp *dp, const char *user, uint64_t batch) {
        return admit_at(dp, user, batch, veil_dp_step(dp));
}

int veil_dp_admit_next(struct veil_dp *dp, const char *user, uint64_t batch) {
        return admit_at(dp, user, batch, veil_dp_step(dp) + 1);
}

enum veil_dp_place veil_dp_place(struct veil_dp *dp, int64_t ts_ms) {
        /* Frozen: the admission refuses it, counted as such. */
        if (!dp->cfg.event_time || !dp->has_open || dp->st.frozen)
                return VEIL_DP_OPEN;
        int64_t k = (ts_ms > 0 ? ts_ms : 0) / dp->cfg.step_ms;
        if (k == dp->open_step)
                return VEIL_DP_OPEN;
        if (k < dp->open_step) {
                dp->st.late++;
                return VEIL_DP_LATE;
        }
        /* The next step, unless it begins another window or tree: the
         * per-user table holds one at a time, and a user of the next one
         * would be admitted to it again after the change. */
        int new_unit = dp->tree ? veil_tree_position(dp->tree) + 1 >=
                                          dp->cfg.tree_steps
                                : window_of(dp, (uint64_t)k) !=
                                          window_of(dp,
                                                    (uint64_t)dp->open_step);
        if (k == dp->open_step + 1 && !new_unit)
                return VEIL_DP_NEXT;
        dp->st.early++;
        return VEIL_DP_EARLY;
}

/* a += x over n doubles (restrict: a row of the step's sum and one of
 * the batch's never overlap, so the loop vectorizes). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void add_row(double *restrict a, const double *restrict x, size_t n) {
        for (size_t k = 0; k < n; k++)
                a[k] += x[k];
}

/* Rows of the step's sum asked for this many rows before their turn:
 * they are scattered over megabytes (E: space × d doubles), a miss per
 * cache line otherwise. */
#define AHEAD 4

/* acc's listed rows += the compact rows c (row i of c for rows[i]),
 * marked touched. */
static void add_rows(double *acc, unsigned char *touched, const double *c,
                     const uint32_t *rows, size_t n, size_t d) {
        for (size_t i = 0; i < n; i++) {
                if (i + AHEAD < n) {
                        const double *next = acc + (size_t)rows[i + AHEAD] * d;
                        for (size_t k = 0; k < d; k += 8)
                                __builtin_prefetch(next + k, 1);
                }
                touched[rows[i]] = 1;
                add_row(acc + (size_t)rows[i] * d, c + i * d, d);
        }
}

int veil_dp_hook(void *ctx, struct veil_grad *g, char *errstr,
                 size_t errstr_size) {
        struct veil_dp *dp = ctx;
        size_t d = dp->d;
        if (!g->sV) {
                snprintf(errstr, errstr_size,
                         "dp_model: the learner's sums are not in double "
                         "(veil_learner_double_sums)");
                return -VEIL_EINVAL;
        }
        if (g->items > dp->items_seen)
                dp->items_seen = g->items;
        add_rows(dp->V, dp->tV, g->sV, g->v_rows, g->n_v, d);
        add_rows(dp->U, dp->tU, g->sU, g->u_rows, g->n_u, d);
        add_rows(dp->E, dp->tE, g->sE, g->e_rows, g->n_e, d);
        add_rows(dp->b, dp->tV, g->sb, g->v_rows, g->n_v, 1);
        dp->st.pending += g->n_users;
        return 1; /* taken: applied, noised, at the end of the DP step */
}

/* Ends the step: the sums are zeroed, and on the clock the next step
 * opens (every path out of a due release goes through here). */
static void clear(struct veil_dp *dp) {
        if (dp->cfg.step_ms && dp->due) {
                dp->open_step = dp->next_step;
                if (dp->open_step < dp->clock_step) {
                        /* The step after the old one, which a batch came
                         * in: the latest batch's is due after it. */
                        dp->next_step = dp->clock_step;
                        dp->next_seen = 0;
                } else {
                        dp->due = 0;
                        dp->next_seen = dp->clock_own > dp->clock_step;
                }
        }
        /* Only touched rows hold anything; a release that consumed them
         * left them zero already. */
        size_t n = dp->items_seen, d = dp->d;
        for (size_t r = 0; r < n && !dp->consumed; r++) {
                if (dp->tV[r]) {
                        memset(dp->V + r * d, 0, d * sizeof(double));
                        dp->b[r] = 0;
                }
                if (dp->tU[r])
                        memset(dp->U + r * d, 0, d * sizeof(double));
        }
        for (size_t r = 0; r < dp->space && !dp->consumed; r++)
                if (dp->tE[r])
                        memset(dp->E + r * d, 0, d * sizeof(double));
        memset(dp->tV, 0, n);
        memset(dp->tU, 0, n);
        memset(dp->tE, 0, dp->space);
        dp->consumed = 0;
        dp->st.pending = 0;
}

/* The row pointers of the step's sums: touched rows, NULL for the rest. */
static void row_pointers(struct veil_dp *dp, size_t items) {
        size_t d = dp->d;
        for (size_t r = 0; r < items; r++) {
                dp->pV[r] = dp->tV[r] ? dp->V + r * d : NULL;
                dp->pb[r] = dp->tV[r] ? dp->b + r : NULL;
                dp->pU[r] = dp->tU[r] ? dp->U + r * d : NULL;
        }
        for (size_t r = 0; r < dp->space; r++)
                dp->pE[r] = dp->tE[r] ? dp->E + r * d : NULL;
}

/* The released blocks other than the biases, zeroed (dp_blocks: bias). */
static void zero_out(struct veil_dp *dp, size_t items) {
        memset(dp->oV, 0, items * dp->d * sizeof(float));
        memset(dp->oU, 0, items * dp->d * sizeof(float));
        memset(dp->oE, 0, dp->space * dp->d * sizeof(float));
}

/* The step's sum becomes the difference of the tree's consecutive noisy
 * prefix sums (tree.h); a tree that is full starts the next one. With
 * bias_only, the other blocks are neither noised nor released. */
static int tree_release(struct veil_dp *dp, size_t items, char *errstr,
                        size_t errstr_size) {
        size_t d = dp->d;
        struct veil_tree_block all[4] = {{dp->pb, dp->ob, items, 1},
                                         {dp->pV, dp->oV, items, d},
                                         {dp->pU, dp->oU, items, d},
                                         {dp->pE, dp->oE, dp->space, d}};
        size_t n = 4;
        if (dp->cfg.bias_only) {
                zero_out(dp, items);
                n = 1;
        }
        int rc = veil_tree_release(dp->tree, all, n, errstr, errstr_size);
        if (rc) {
                /* The tree is reset: the next step opens another. */
                dp->st.tree++;
                return rc;
        }
        if (veil_tree_position(dp->tree) >= dp->cfg.tree_steps) {
                veil_tree_reset(dp->tree);
                dp->st.tree++;
        }
        return 0;
}

/* A step is due: the clock passed the open one, or enough are counted. */
static int step_due(const struct veil_dp *dp) {
        if (dp->cfg.step_ms)
                return dp->due > 0;
        return dp->st.pending >= dp->cfg.step_events;
}

int veil_dp_release(struct veil_dp *dp, struct veil_learner *L,
                    struct veil_model *m, char *errstr, size_t errstr_size) {
        dp->st.just_frozen = 0;
        if (!step_due(dp))
                return 0;
        if (dp->st.frozen) {
                clear(dp); /* nothing is released any more */
                return 0;
        }
        int empty = !dp->st.pending;
        uint64_t unit = current_window(dp);
        double cost;
        int rc = veil_accountant_step_cost(dp->acc, unit, &cost, errstr,
                                           errstr_size);
        if (rc)
                return rc;
        if (dp->cfg.eps_budget > 0 && isfinite(dp->cfg.eps_budget)) {
                /* Against the whole spend: the other instances' releases
                 * are in this model too. */
                double next = cost + dp->st.rho_others;
                rc = !isfinite(next)
                             ? 1
                             : veil_accountant_would_exceed(
                                       dp->acc, next, dp->cfg.eps_budget,
                                       dp->cfg.delta, errstr, errstr_size);
                if (rc < 0)
                        return rc;
                if (rc == 1) {
                        dp->st.frozen = 1;
                        dp->st.just_frozen = 1;
                        clear(dp);
                        return 0;
                }
        }
        /* Charged and durably saved before anything derived from the
         * noisy sum exists: a crash after this point over-reports. */
        rc = veil_accountant_charge_step(dp->acc, unit, &cost, errstr,
                                         errstr_size);
        if (!rc)
                rc = veil_accountant_save(dp->acc, dp->path, errstr,
                                          errstr_size);
        update_epsilon(dp);
        if (rc)
                return rc;
        size_t items = veil_model_items(m), d = dp->d;
        if (items > dp->items_seen) /* the noise reaches these rows */
                dp->items_seen = items;
        /* Every coordinate of every block, touched or not: which rows a
         * step touches depends on the data. With bias_only the other
         * blocks are neither noised nor released (a sub-vector of a
         * contribution has norm ≤ C too). */
        row_pointers(dp, items);
        if (dp->tree) {
                if ((rc = tree_release(dp, items, errstr, errstr_size))) {
                        clear(dp);
                        return rc;
                }
        } else if (dp->cfg.bias_only) {
                zero_out(dp, items);
                if ((rc = veil_noise_add_rows(dp->ns, &dp->rng, dp->pb, items,
                                              1, dp->ob, errstr,
                                              errstr_size))) {
                        clear(dp);
                        return rc;
                }
        } else if ((rc = veil_noise_add_rows(dp->ns, &dp->rng, dp->pV, items,
                                             d, dp->oV, errstr,
                                             errstr_size)) ||
                   (rc = veil_noise_add_rows(dp->ns, &dp->rng, dp->pU, items,
                                             d, dp->oU, errstr,
                                             errstr_size)) ||
                   (rc = veil_noise_add_rows(dp->ns, &dp->rng, dp->pE,
                                             dp->space, d, dp->oE, errstr,
                                             errstr_size)) ||
                   (rc = veil_noise_add_rows(dp->ns, &dp->rng, dp->pb, items,
                                             1, dp->ob, errstr,
                                             errstr_size))) {
                clear(dp);
                return rc;
        } else {
                dp->consumed = 1; /* every block read and zeroed */
        }
        /* Plain SGD on the noisy mean, not the learner's Adagrad: Adagrad
         * divides by the running norm, so on coordinates that hold only
         * noise it takes steps of the full learning rate whatever σ is. */
        if (dp->cfg.adagrad) {
                struct veil_grad g = {0};
                g.V = dp->oV;
                g.U = dp->oU;
                g.E = dp->oE;
                g.b = dp->ob;
                g.d = d;
                g.items = items;
                g.space = dp->space;
                g.clip = (float)dp->cfg.clip;
                g.dense = 1;
                veil_learn_apply(L, m, &g);
                dp->st.empty_steps += empty;
                clear(dp);
                return 1;
        }
        float a = -(float)(dp->cfg.lr / (double)dp->cfg.step_events);
        cblas_saxpy((int)(items * d), a, dp->oV, 1, m->V, 1);
        cblas_saxpy((int)(items * d), a, dp->oU, 1, m->U, 1);
        cblas_saxpy((int)(dp->space * d), a, dp->oE, 1, m->E, 1);
        cblas_saxpy((int)items, a, dp->ob, 1, m->b, 1);
        m->steps++;
        dp->st.empty_steps += empty;
        clear(dp);
        return 1;
}

int veil_dp_restored(struct veil_dp *dp, char *errstr, size_t errstr_size) {
        update_epsilon(dp);
        new_tree_after_restart(dp);
        return veil_accountant_save(dp->acc, dp->path, errstr, errstr_size);
}

int veil_dp_bias_only(const struct veil_dp *dp) { return dp->cfg.bias_only; }

int veil_dp_ready(const struct veil_dp *dp) {
        return step_due(dp) && !dp->st.frozen;
}

void veil_dp_freeze(struct veil_dp *dp) {
        dp->st.frozen = 1;
}

struct veil_dp_stats veil_dp_stats(const struct veil_dp *dp) {
        struct veil_dp_stats s = dp->st;
        s.tree_pos = dp->tree ? veil_tree_position(dp->tree) : 0;
        return s;
}

const struct veil_accountant *veil_dp_accountant(const struct veil_dp *dp) {
        return dp->acc;
}

struct veil_accountant *veil_dp_accountant_mut(struct veil_dp *dp) {
        return dp->acc;
}
