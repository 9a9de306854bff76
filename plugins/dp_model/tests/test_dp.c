/*
 * test_dp.c — the private learning step (dp.c): per-user bounds, charging
 * and saving before release, the budget, restarts, and an empirical
 * privacy test of one step on neighbouring inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "ckpt.h"
#include "codec.h"
#include "dp.h"
#include "learn.h"
#include "model.h"
#include "share.h"

#include <veil/veil.h>

static const unsigned char SEED[32] = {7, 1, 2, 3};

static struct veil_model *new_model(size_t items, size_t d, size_t space) {
        char err[256], id[32];
        struct veil_catalog *cat;
        assert_int_equal(veil_catalog_new(&cat, items, 5, err, sizeof(err)),
                         0);
        struct veil_model *m;
        assert_int_equal(veil_model_new(&m, cat, d, space, 0.1f, 3, err,
                                        sizeof(err)),
                         0);
        for (size_t i = 0; i < items; i++) {
                snprintf(id, sizeof(id), "i%zu", i);
                assert_int_equal(veil_model_item(m, id, 1), (int32_t)i);
        }
        return m;
}

/* An accountant file and the lock beside it, removed. */
static void unlink_acc(const char *path) {
        char lock[300];
        unlink(path);
        snprintf(lock, sizeof(lock), "%s.lock", path);
        unlink(lock);
}

/* A state file in tmpfs when there is one: the tests release thousands
 * of steps, each with an fsync. */
static void tmp_path(char *out, size_t n, const char *name) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(out, n, "%s/veil-test-dp-%d-%s", dir, (int)getpid(), name);
        unlink_acc(out);
}

static struct veil_dp_cfg cfg_of(const char *path, double sigma) {
        struct veil_dp_cfg c = {0};
        c.mode = VEIL_DP_MODE_GAUSSIAN;
        c.sigma = sigma;
        c.lr = 1;
        c.clip = 1;
        c.step_events = 1;
        c.window_steps = 1000000;
        c.max_contrib = 1000000;
        c.user_slots = 1024;
        c.delta = 1e-6;
        c.acc_path = path;
        c.seed = SEED;
        return c;
}

/* A gradient of the model's shape whose only nonzero coordinate is
 * V[0][0] = x, summed over n_users contributions. */
struct fake {
        float *V, *U, *E, *b;
        double *sV, sb; /* the same, compact and in double: row 0 only */
        uint32_t row0;
        struct veil_grad g;
};

static void fake_init(struct fake *f, const struct veil_model *m) {
        f->V = calloc(m->cap * m->d, sizeof(float));
        f->U = calloc(m->cap * m->d, sizeof(float));
        f->E = calloc(m->space * m->d, sizeof(float));
        f->b = calloc(m->cap, sizeof(float));
        f->sV = calloc(m->d, sizeof(double));
        assert_non_null(f->sV);
        assert_non_null(f->V);
        assert_non_null(f->U);
        assert_non_null(f->E);
        assert_non_null(f->b);
        f->row0 = 0;
}

static struct veil_grad *fake_grad(struct fake *f, const struct veil_model *m,
                                   float x, size_t n_users) {
        memset(&f->g, 0, sizeof(f->g));
        f->V[0] = x;
        f->sV[0] = x;
        f->sb = 0;
        f->g.sV = f->sV;
        f->g.sb = &f->sb;
        f->g.sU = f->sV; /* n_u = n_e = 0: not read */
        f->g.sE = f->sV;
        f->g.V = f->V;
        f->g.U = f->U;
        f->g.E = f->E;
        f->g.b = f->b;
        f->g.v_rows = &f->row0;
        f->g.n_v = 1;
        f->g.d = m->d;
        f->g.items = veil_model_items(m);
        f->g.space = m->space;
        f->g.n_users = n_users;
        f->g.clip = 1;
        return &f->g;
}

static void fake_free(struct fake *f) {
        free(f->sV);
        free(f->V);
        free(f->U);
        free(f->E);
        free(f->b);
}

/* A 4-item model, its learner, a fake gradient and a dp of cfg c, whose
 * state file is a fresh one named after the test. */
struct fx {
        char path[256];
        struct veil_model *m;
        struct veil_learner *L;
        struct veil_dp *dp;
        struct fake f;
};

static void fx_open(struct fx *x, const char *name, struct veil_dp_cfg c) {
        char err[256];
        tmp_path(x->path, sizeof(x->path), name);
        x->m = new_model(4, 2, 4);
        struct veil_learn_cfg lc = {0.1f, 1, 1, 4, 4, 0};
        assert_int_equal(veil_learner_new(&x->L, &lc, x->m, 1), 0);
        c.acc_path = x->path;
        assert_int_equal(veil_dp_new(&x->dp, &c, x->m, err, sizeof(err)), 0);
        fake_init(&x->f, x->m);
}

static void fx_close(struct fx *x) {
        fake_free(&x->f);
        veil_dp_free(x->dp);
        veil_learner_free(x->L);
        veil_model_free(x->m);
        unlink_acc(x->path);
}

/* ---- per-user bounds --------------------------------------------------- */

/* A step takes VEIL_DP_STEP_MAX contributions, the bound the rounding
 * margin assumes (dp.h), or fewer (step_max, tests): the next person is
 * refused and counted, one already in is still in, and the next step
 * takes people again. */
static void test_step_cap(void **st) {
        (void)st;
        char err[256], name[32];
        struct veil_dp_cfg c = cfg_of(NULL, 1.0);
        c.step_events = 1000000; /* released by hand below */
        c.step_max = 1000;
        struct fx x;
        fx_open(&x, "cap", c);
        struct veil_dp *dp = x.dp;
        for (uint32_t i = 0; i < 1000; i++) {
                snprintf(name, sizeof(name), "p%u", i);
                if (veil_dp_admit(dp, name, 1) != 1)
                        fail_msg("person %u refused below the cap", i);
        }
        assert_int_equal(veil_dp_admit(dp, "one-more", 1), 0);
        assert_int_equal(veil_dp_stats(dp).refused_step_full, 1);
        assert_int_equal(veil_dp_admit(dp, "p7", 1), 1); /* already in */
        assert_int_equal(veil_dp_stats(dp).refused_step_full, 1);
        /* Release the step (the hook's count makes it due). */
        assert_int_equal(veil_dp_hook(dp, fake_grad(&x.f, x.m, 1, 1000000),
                                      err, sizeof(err)),
                         1);
        assert_int_equal(veil_dp_release(dp, x.L, x.m, err, sizeof(err)), 1);
        assert_int_equal(veil_dp_admit(dp, "one-more", 2), 1);
        fx_close(&x);
}

/* One accountant file, two holders in this process: a reload's new stage
 * (another pipeline) shares it with the one it replaces; a second stage of
 * the same pipeline is refused; the file is free again once released. */
static void test_file_owners(void **st) {
        (void)st;
        char err[256];
        struct veil_dp_cfg c = cfg_of(NULL, 1.0);
        c.owner = 7;
        struct fx x;
        fx_open(&x, "owners", c);
        c.acc_path = x.path;
        struct veil_dp *dp2 = NULL;
        assert_int_equal(veil_dp_new(&dp2, &c, x.m, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "two dp_model stages of this pipeline"));
        c.owner = 8; /* a reload's pipeline */
        assert_int_equal(veil_dp_new(&dp2, &c, x.m, err, sizeof(err)), 0);
        veil_dp_free(x.dp); /* the old stage goes */
        x.dp = NULL;
        c.owner = 7; /* its owner's place is free again */
        struct veil_dp *dp3 = NULL;
        assert_int_equal(veil_dp_new(&dp3, &c, x.m, err, sizeof(err)), 0);
        veil_dp_free(dp3);
        veil_dp_free(dp2);
        fx_close(&x);
}

static void test_admit_bounds(void **st) {
        (void)st;
        char err[256];
        struct veil_dp_cfg c = cfg_of(NULL, 1.0);
        c.step_events = 2;
        c.max_contrib = 2;
        c.window_steps = 3;
        c.user_slots = 64;
        struct fx x;
        fx_open(&x, "admit", c);
        struct veil_dp *dp = x.dp;
        struct veil_model *m = x.m;
        struct veil_learner *L = x.L;

        /* Step 0: alice in batch 1 (twice: one contribution), again in
         * batch 2 of the same step: refused. */
        assert_int_equal(veil_dp_admit(dp, "alice", 1), 1);
        assert_int_equal(veil_dp_admit(dp, "alice", 1), 1);
        assert_int_equal(veil_dp_admit(dp, "bob", 1), 1);
        assert_int_equal(veil_dp_admit(dp, "alice", 2), 0);
        assert_int_equal(veil_dp_stats(dp).refused_step, 1);
        assert_int_equal(veil_dp_hook(dp, fake_grad(&x.f, m, 1, 2), err,
                                      sizeof(err)),
                         1);
        assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)), 1);
        /* Step 1: alice's second and last step of the window. */
        assert_int_equal(veil_dp_admit(dp, "alice", 3), 1);
        assert_int_equal(veil_dp_hook(dp, fake_grad(&x.f, m, 1, 2), err,
                                      sizeof(err)),
                         1);
        assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)), 1);
        /* Step 2: alice is at M = 2 in this window; bob is not. */
        assert_int_equal(veil_dp_admit(dp, "alice", 4), 0);
        assert_int_equal(veil_dp_stats(dp).refused_window, 1);
        assert_int_equal(veil_dp_admit(dp, "bob", 4), 1);
        assert_int_equal(veil_dp_hook(dp, fake_grad(&x.f, m, 1, 2), err,
                                      sizeof(err)),
                         1);
        assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)), 1);
        /* Step 3 opens window 1: alice may join again. */
        assert_int_equal(veil_dp_stats(dp).steps, 3);
        assert_int_equal(veil_dp_admit(dp, "alice", 5), 1);

        /* Past 3/4 of its 64 slots the table grows: a newcomer is never
         * refused because others came first, and everyone admitted keeps
         * their count (a second contribution in the same step is still
         * refused after the move). */
        int admitted = 0;
        char name[32];
        for (int i = 0; i < 1000; i++) {
                snprintf(name, sizeof(name), "u%d", i);
                admitted += veil_dp_admit(dp, name, 5);
        }
        assert_int_equal(admitted, 1000);
        assert_int_equal(veil_dp_stats(dp).refused_full, 0);
        assert_true(veil_dp_stats(dp).user_slots >= 1000 * 4 / 3);
        uint64_t refused = veil_dp_stats(dp).refused_step;
        for (int i = 0; i < 1000; i++) {
                snprintf(name, sizeof(name), "u%d", i);
                assert_int_equal(veil_dp_admit(dp, name, 6), 0);
        }
        assert_int_equal(veil_dp_admit(dp, "alice", 6), 0);
        assert_int_equal(veil_dp_stats(dp).refused_step, refused + 1001);

        fx_close(&x);
}

/* ---- the step schedule --------------------------------------------------- */

/* One stream of batches through admit, hook and release, as dp_model runs
 * them; release r summed counts[r] contributions, from the batches whose
 * bits masks[r] has. Batch i comes at clock 400·i with three of seven
 * users, and "x" joins batch 4 when with_x. Returns the releases. */
struct sched {
        struct fx x;
        uint64_t *counts, *masks, mask;
        int n;
};

static void sched_release(struct sched *r) {
        char err[256];
        while (veil_dp_ready(r->x.dp)) {
                assert_true(r->n < 64);
                r->masks[r->n] = r->mask;
                r->mask = 0;
                r->counts[r->n++] = veil_dp_stats(r->x.dp).pending;
                assert_int_equal(veil_dp_release(r->x.dp, r->x.L, r->x.m, err,
                                                 sizeof(err)),
                                 1);
        }
}

static int run_schedule(int64_t step_ms, int with_x, uint64_t counts[64],
                        uint64_t masks[64]) {
        char err[256];
        struct veil_dp_cfg c = cfg_of(NULL, 1.0);
        c.step_events = 7;
        c.step_ms = step_ms;
        struct sched r = {.counts = counts, .masks = masks};
        fx_open(&r.x, "sched", c);
        struct veil_dp *dp = r.x.dp;
        for (int i = 0; i < 20; i++) {
                veil_dp_clock(dp, 400 * (int64_t)i);
                sched_release(&r); /* on the clock: before the batch */
                char name[16];
                size_t in = 0;
                for (int j = 0; j < 3; j++) {
                        snprintf(name, sizeof(name), "u%d", (3 * i + j) % 7);
                        in += (size_t)veil_dp_admit(dp, name, (uint64_t)i);
                }
                if (with_x && i == 4)
                        in += (size_t)veil_dp_admit(dp, "x", (uint64_t)i);
                if (in) {
                        r.mask |= (uint64_t)1 << i;
                        assert_int_equal(
                                veil_dp_hook(dp, fake_grad(&r.x.f, r.x.m, 1, in),
                                             err, sizeof(err)),
                                1);
                }
                sched_release(&r); /* counted: after the batch's sum */
        }
        assert_int_equal(veil_dp_stats(dp).steps, (uint64_t)r.n);
        fx_close(&r.x);
        return r.n;
}

/* On the clock, one person's events change only the step they join: the
 * same releases, each summing the same others. Counted, x's contribution
 * moves the boundary of every later step (why step_interval_s 0 is
 * warned about): this half shows the test can tell. */
static void test_schedule_independent(void **st) {
        (void)st;
        uint64_t a[64], b[64], ma[64], mb[64];
        int na = run_schedule(1000, 1, a, ma), nb = run_schedule(1000, 0, b, mb);
        /* Clock 0..7600 in steps of 1 s: steps 0..6 released, 7 open. */
        assert_int_equal(na, 7);
        assert_int_equal(nb, 7);
        for (int r = 0; r < na; r++) {
                /* batch 4 (clock 1600) is in step 1 */
                assert_int_equal(a[r], b[r] + (r == 1));
                assert_int_equal(ma[r], mb[r]);
        }
        assert_int_equal(ma[1], 0x18u); /* batches 3 and 4 */

        /* Counted steps of 7: without x, batches 3-5 make a step; with
         * x, batch 4 completes one, and every later step moves. */
        na = run_schedule(0, 1, a, ma);
        nb = run_schedule(0, 0, b, mb);
        int moved = 0;
        for (int r = 0; r < na && r < nb; r++)
                moved += ma[r] != mb[r];
        assert_true(moved >= 3);
}

/* The first batch past a step's end releases it, also when nobody
 * contributed to it (its absence would tell that nobody did), and steps
 * no batch fell in are skipped; a clock going back changes nothing;
 * windows count the clock's steps; a frozen stage lets the steps pass
 * without releasing them. */
static void test_clock_steps(void **st) {
        (void)st;
        char err[256];
        struct veil_dp_cfg c = cfg_of(NULL, 1.0);
        c.step_events = 4;
        c.step_ms = 1000;
        c.max_contrib = 1;
        c.window_steps = 4;
        struct fx x;
        fx_open(&x, "clock", c);
        struct veil_dp *dp = x.dp;
        struct veil_grad *g1 = fake_grad(&x.f, x.m, 1, 1);
#define RELEASE() veil_dp_release(dp, x.L, x.m, err, sizeof(err))

        veil_dp_clock(dp, 10500); /* opens step 10 (window 2) */
        assert_false(veil_dp_ready(dp));
        assert_int_equal(veil_dp_admit(dp, "alice", 1), 1);
        assert_int_equal(veil_dp_hook(dp, g1, err, sizeof(err)), 1);
        veil_dp_clock(dp, 9000); /* back: nothing due */
        assert_false(veil_dp_ready(dp));
        veil_dp_clock(dp, 10999);
        assert_false(veil_dp_ready(dp));
        /* A batch in step 13: step 10 goes, 11 and 12 (no batch) do not. */
        veil_dp_clock(dp, 13000);
        assert_true(veil_dp_ready(dp));
        assert_int_equal(RELEASE(), 1);
        assert_false(veil_dp_ready(dp));
        struct veil_dp_stats s = veil_dp_stats(dp);
        assert_int_equal(s.steps, 1);
        assert_int_equal(s.empty_steps, 0);
        assert_int_equal(s.pending, 0);
        /* Step 13 is in window 3 (steps 12..15): alice may join once
         * more, once in the step. */
        assert_int_equal(veil_dp_admit(dp, "alice", 2), 1);
        assert_int_equal(veil_dp_admit(dp, "alice", 3), 0);
        assert_int_equal(veil_dp_stats(dp).refused_step, 1);
        assert_int_equal(veil_dp_hook(dp, g1, err, sizeof(err)), 1);
        veil_dp_clock(dp, 14000);
        assert_int_equal(RELEASE(), 1);
        /* Step 14, window 3: alice is at M = 1, so the step's one batch
         * brings nothing; it is released all the same, noise alone. */
        assert_int_equal(veil_dp_admit(dp, "alice", 4), 0);
        assert_int_equal(veil_dp_stats(dp).refused_window, 1);
        veil_dp_clock(dp, 16000); /* step 16: window 4 */
        assert_int_equal(RELEASE(), 1);
        assert_false(veil_dp_ready(dp));
        s = veil_dp_stats(dp);
        assert_int_equal(s.steps, 3);
        assert_int_equal(s.empty_steps, 1);
        /* Charged by clock window, M = 1 each: step 10 (window 2) and 13
         * (window 3) cost 1/(2σ²) each, step 14 (window 3 again) nothing. */
        double unit = 1 / (2 * s.sigma_acc * s.sigma_acc);
        assert_true(s.rho_own >= 2 * unit && s.rho_own < 2 * unit * 1.000001);
        assert_int_equal(veil_dp_admit(dp, "alice", 5), 1);
        fx_close(&x);

        /* A budget below one step's cost: the first due step freezes,
         * and the steps the clock passes after are not released. */
        c.eps_budget = 0.5;
        fx_open(&x, "clock", c);
        dp = x.dp;
        veil_dp_clock(dp, 1000);
        veil_dp_clock(dp, 5000);
        assert_true(veil_dp_ready(dp));
        assert_int_equal(RELEASE(), 0);
        assert_true(veil_dp_stats(dp).just_frozen);
        assert_false(veil_dp_ready(dp));
        veil_dp_clock(dp, 9000);
        assert_false(veil_dp_ready(dp));
        assert_int_equal(veil_dp_stats(dp).steps, 0);
        assert_int_equal(veil_dp_admit(dp, "bob", 9), 0);
#undef RELEASE
        fx_close(&x);
}

/* The learner's clipping bounds each user's contribution (learn.c; its
 * own test compares with materialized gradients): here, that the sum the
 * hook takes has norm ≤ n_users·C for wild inputs. */
static void test_hook_sum_bounded(void **st) {
        (void)st;
        char path[256], err[256];
        tmp_path(path, sizeof(path), "clip");
        struct veil_model *m = new_model(20, 8, 16);
        for (size_t i = 0; i < 20 * 8; i++)
                m->V[i] *= 100; /* large gradients */
        struct veil_learner *L;
        struct veil_learn_cfg lc = {0.1f, 0.5f, 1, 8, 4, 0};
        assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
        struct veil_dp_cfg c = cfg_of(path, 1.0);
        c.clip = 0.5;
        c.step_events = 1000000; /* never released: inspect the sum */
        struct veil_dp *dp;
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        veil_learner_set_noise(L, veil_dp_hook, dp);
        veil_learner_double_sums(L);
        uint32_t feat[3] = {1, 5, 9};
        struct veil_example ex[12];
        for (size_t i = 0; i < 12; i++)
                ex[i] = (struct veil_example){feat, 3, (int32_t)(i % 20),
                                              NULL, 0, (int32_t)((i * 7) % 20),
                                              (uint32_t)(i % 5)};
        uint64_t v0 = m->steps;
        assert_int_equal(veil_learn_step(L, m, ex, 12, 5, err, sizeof(err)),
                         0);
        assert_int_equal(m->steps, v0); /* taken, not applied */
        struct veil_dp_stats ds = veil_dp_stats(dp);
        assert_int_equal(ds.pending, 5);
        /* The norms the learner clipped: all scaled to ≤ C. */
        const float *nrm = veil_learn_norms(L), *sc = veil_learn_scales(L);
        for (size_t u = 0; u < 5; u++)
                assert_true(nrm[u] * sc[u] <= 0.5f * 1.0001f);
        assert_true(veil_learn_last(L).clipped > 0);
        veil_dp_free(dp);
        veil_learner_free(L);
        veil_model_free(m);
        unlink_acc(path);
}

/* ---- accounting and budget --------------------------------------------- */

static void test_charged_saved_before_apply(void **st) {
        (void)st;
        char path[256], err[256];
        tmp_path(path, sizeof(path), "save");
        struct veil_model *m = new_model(4, 2, 4);
        struct veil_learner *L;
        struct veil_learn_cfg lc = {0.1f, 1, 1, 4, 4, 0};
        assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
        struct veil_dp_cfg c = cfg_of(path, 2.0);
        struct veil_dp *dp;
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        assert_true(veil_dp_stats(dp).epsilon == 0);
        struct fake f;
        fake_init(&f, m);
        float e0 = m->E[0];
        double last = 0;
        for (int i = 0; i < 5; i++) {
                assert_int_equal(veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err,
                                              sizeof(err)),
                                 1);
                assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)),
                                 1);
                struct veil_dp_stats ds = veil_dp_stats(dp);
                assert_true(ds.epsilon > last);
                last = ds.epsilon;
                /* The file holds this release already. */
                struct veil_accountant *a2;
                struct veil_dp_mech mech = {VEIL_DP_GAUSSIAN, 2.0, 1, 0, 1, 0};
                assert_int_equal(veil_accountant_new(&a2, &mech, err,
                                                     sizeof(err)),
                                 0);
                assert_int_equal(veil_accountant_load(a2, path, err,
                                                      sizeof(err)),
                                 0);
                assert_int_equal(veil_accountant_steps(a2), (uint64_t)i + 1);
                assert_true(veil_accountant_rho(a2) >= ds.rho);
                veil_accountant_free(a2);
        }
        /* Noise reached coordinates no gradient touched. */
        assert_true(m->E[0] != e0);
        /* ρ = steps/(2σ_acc²), σ_acc just below σ/(1 + the sums'
         * rounding margin), by the grid. */
        struct veil_dp_stats ds = veil_dp_stats(dp);
        double top = 2.0 / (1.0 + VEIL_DP_SUM_MARGIN);
        assert_true(ds.sigma_acc < top && ds.sigma_acc > top - 1e-3);
        assert_true(ds.rho >= 5 / (2 * ds.sigma_acc * ds.sigma_acc));
        veil_dp_free(dp);

        /* A restart resumes at or above the last value; a corrupt file
         * refuses to start rather than start from zero. */
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        assert_true(veil_dp_stats(dp).epsilon >= last);
        assert_int_equal(veil_dp_stats(dp).steps, 5);
        veil_dp_free(dp);
        FILE *fp = fopen(path, "r+b");
        assert_non_null(fp);
        fseek(fp, 20, SEEK_SET);
        fputc(0x5a, fp);
        fclose(fp);
        assert_true(veil_dp_new(&dp, &c, m, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "accountant_file"));
        fake_free(&f);
        veil_learner_free(L);
        veil_model_free(m);
        unlink_acc(path);
}

static void test_budget_freezes(void **st) {
        (void)st;
        char path[256], err[256];
        tmp_path(path, sizeof(path), "budget");
        struct veil_model *m = new_model(4, 2, 4);
        struct veil_learner *L;
        struct veil_learn_cfg lc = {0.1f, 1, 1, 4, 4, 0};
        assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
        struct veil_dp_cfg c = cfg_of(path, 3.0);
        c.eps_budget = 2.0;
        struct veil_dp *dp;
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        struct fake f;
        fake_init(&f, m);
        int released = 0, froze = 0;
        for (int i = 0; i < 1000 && !veil_dp_stats(dp).frozen; i++) {
                assert_int_equal(veil_dp_admit(dp, "x", (uint64_t)i), 1);
                veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err, sizeof(err));
                int rc = veil_dp_release(dp, L, m, err, sizeof(err));
                assert_true(rc == 0 || rc == 1);
                released += rc;
                froze += veil_dp_stats(dp).just_frozen;
        }
        struct veil_dp_stats ds = veil_dp_stats(dp);
        assert_int_equal(ds.frozen, 1);
        assert_int_equal(froze, 1);
        assert_true(released > 0);
        assert_true(ds.epsilon <= 2.0);
        assert_int_equal(ds.steps, (uint64_t)released);
        /* Frozen: nobody is learned from, nothing more is released, the
         * model stays as it is. */
        float snap = m->V[0];
        uint64_t ver = m->steps;
        assert_int_equal(veil_dp_admit(dp, "y", 5000), 0);
        veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err, sizeof(err));
        assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)), 0);
        assert_int_equal(veil_dp_stats(dp).just_frozen, 0);
        assert_true(m->V[0] == snap);
        assert_int_equal(m->steps, ver);
        assert_int_equal(veil_dp_stats(dp).steps, (uint64_t)released);
        veil_dp_free(dp);
        fake_free(&f);
        veil_learner_free(L);
        veil_model_free(m);
        unlink_acc(path);
}

/* The other instances' ρ counts in ε and in the budget: the same stream
 * and budget with another instance's spend beside it releases fewer steps
 * and reports ε of both. */
static void test_others_count(void **st) {
        (void)st;
        char path[2][256], err[256];
        int released[2] = {0, 0};
        struct veil_dp_stats ds[2];
        double draws = 0;
        for (int k = 0; k < 2; k++) {
                tmp_path(path[k], sizeof(path[k]), k ? "others1" : "others0");
                struct veil_model *m = new_model(4, 2, 4);
                struct veil_learner *L;
                struct veil_learn_cfg lc = {0.1f, 1, 1, 4, 4, 0};
                assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
                struct veil_dp_cfg c = cfg_of(path[k], 3.0);
                c.eps_budget = 4.0;
                struct veil_dp *dp;
                assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
                if (k) {
                        veil_dp_set_others(dp, 0.2);
                        veil_dp_set_others(dp, 0.1); /* never goes down */
                        assert_true(veil_dp_stats(dp).rho_others == 0.2);
                        assert_true(veil_dp_stats(dp).epsilon > 0);
                }
                struct fake f;
                fake_init(&f, m);
                for (int i = 0; i < 1000 && !veil_dp_stats(dp).frozen; i++) {
                        assert_int_equal(veil_dp_admit(dp, "x", (uint64_t)i),
                                         1);
                        veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err,
                                     sizeof(err));
                        released[k] += veil_dp_release(dp, L, m, err,
                                                       sizeof(err));
                }
                ds[k] = veil_dp_stats(dp);
                draws = veil_accountant_draws_per_rho(veil_dp_accountant(dp));
                veil_dp_free(dp);
                fake_free(&f);
                veil_learner_free(L);
                veil_model_free(m);
                unlink_acc(path[k]);
        }
        /* Each step costs 1/(2·3²) = 0.0556: 0.2 is more than three. */
        assert_true(released[1] > 0 && released[1] + 3 <= released[0]);
        assert_true(ds[1].epsilon <= 4.0 && ds[0].epsilon <= 4.0);
        assert_true(ds[1].rho >= ds[1].rho_own + 0.2);
        assert_true(ds[1].epsilon > ds[1].epsilon_own);
        /* Both spends at the stage's rate of sampler draws (every noised
         * coordinate, at least 2·4·2 + 4·2 + 4 = 28 for 4 items, d = 2 and
         * 4 feature rows, per 1/(2σ_acc²) of ρ, σ_acc just under 3):
         * above the exact sampler's ε. */
        double eps, exact;
        assert_true(draws >= 28 * 2 * 3 * 3 * 0.99);
        assert_int_equal(veil_dp_epsilon_sampled(ds[1].rho, 1e-6, draws, &eps,
                                                 err, sizeof(err)),
                         0);
        assert_true(ds[1].epsilon == eps);
        assert_int_equal(veil_dp_epsilon(ds[1].rho, 1e-6, &exact, NULL, err,
                                         sizeof(err)),
                         0);
        assert_true(ds[1].epsilon > exact);
        assert_true(ds[0].rho == ds[0].rho_own);
}

/* The table of model updates in the checkpoint keeps every sender's ρ;
 * a table of the format before it (no ρ) still reads. */
static void put_le(unsigned char **p, uint64_t v, int bytes) {
        for (int i = 0; i < bytes; i++)
                *(*p)++ = (unsigned char)(v >> (8 * i));
}

static size_t table(unsigned char *buf, int with_rho, const double *rho) {
        static const char *const ids[] = {"a", "bb", "self"};
        unsigned char *p = buf;
        memcpy(p, with_rho ? "VDP2" : "VDPS", 4);
        p += 4;
        put_le(&p, 3, 4);
        for (int i = 0; i < 3; i++) {
                put_le(&p, strlen(ids[i]), 2);
                memcpy(p, ids[i], strlen(ids[i]));
                p += strlen(ids[i]);
                put_le(&p, (uint64_t)(7 + i), 8);
                put_le(&p, 0, 4);
                if (with_rho) {
                        uint64_t bits;
                        memcpy(&bits, &rho[i], sizeof(bits));
                        put_le(&p, bits, 8);
                }
        }
        return (size_t)(p - buf);
}

static void test_share_table_rho(void **st) {
        (void)st;
        unsigned char buf[256];
        double rho[3] = {0.25, 0.5, 9.0}; /* self's is the accountant's */
        struct veil_share *sh, *sh2;
        assert_int_equal(veil_share_new(&sh, "self", 0, 1 << 20), 0);
        size_t n = table(buf, 1, rho);
        assert_int_equal(veil_share_decode(sh, buf, n), 0);
        assert_true(veil_share_others_rho(sh, NULL) >= 0.75 &&
                    veil_share_others_rho(sh, NULL) < 0.75 + 1e-12);
        /* Round trip through this build's encoder. */
        void *enc;
        size_t len;
        assert_int_equal(veil_share_encode(sh, 0.375, &enc, &len), 0);
        assert_int_equal(veil_share_new(&sh2, "self", 0, 1 << 20), 0);
        assert_int_equal(veil_share_decode(sh2, enc, len), 0);
        assert_true(veil_share_others_rho(sh2, NULL) == veil_share_others_rho(sh, NULL));
        assert_int_equal(veil_share_stats(sh2).seq, 9);
        free(enc);
        /* A checkpoint's smaller ρ does not lower what is known. */
        rho[1] = 0.125;
        n = table(buf, 1, rho);
        assert_int_equal(veil_share_decode(sh2, buf, n), 0);
        assert_true(veil_share_others_rho(sh2, NULL) >= 0.75);
        /* A NaN ρ is an unknown cost: infinite, never zero. */
        rho[0] = NAN;
        n = table(buf, 1, rho);
        assert_int_equal(veil_share_decode(sh2, buf, n), 0);
        assert_true(isinf(veil_share_others_rho(sh2, NULL)));
        veil_share_free(sh2);
        /* Another instance restoring this checkpoint (a state topic shared
         * by a group) holds this instance's releases too: the writer's own
         * ρ counts among the others'. It counted as nothing, so the
         * restorer reported the largest of the two spends, not their sum. */
        assert_int_equal(veil_share_encode(sh, 0.375, &enc, &len), 0);
        assert_int_equal(veil_share_new(&sh2, "other", 0, 1 << 20), 0);
        assert_int_equal(veil_share_decode(sh2, enc, len), 0);
        assert_true(veil_share_others_rho(sh2, NULL) >= 0.75 + 0.375);
        free(enc);
        veil_share_free(sh2);
        veil_share_free(sh);
        /* The older format: no ρ. The model restored with it holds the
         * releases of a and bb at a cost unknown, not nothing (they read
         * as 0); self's own entry is its accountant's. A truncated table
         * is refused. */
        assert_int_equal(veil_share_new(&sh, "self", 0, 1 << 20), 0);
        n = table(buf, 0, rho);
        assert_int_equal(veil_share_decode(sh, buf, n), 0);
        size_t senders;
        assert_true(isinf(veil_share_others_rho(sh, &senders)));
        assert_int_equal(senders, 2);
        veil_share_free(sh);
        /* Read by bb: a and self (the writer) are the others. */
        assert_int_equal(veil_share_new(&sh, "bb", 0, 1 << 20), 0);
        assert_int_equal(veil_share_decode(sh, buf, n), 0);
        assert_true(isinf(veil_share_others_rho(sh, &senders)));
        assert_int_equal(senders, 2);
        assert_true(veil_share_own_unaccounted(sh, 0) == 0);
        assert_int_equal(veil_share_decode(sh, buf, n - 1), -VEIL_EDECODE);
        n = table(buf, 1, rho);
        assert_int_equal(veil_share_decode(sh, buf, n - 8), -VEIL_EDECODE);
        veil_share_free(sh);
}

/* An update of two item biases by `inst`, value v for i1. */
/* A one-chunk item_bias update of `rows` values, item ids to append. */
static veil_rec_t *update_begin(struct veil_codec *c, const char *inst,
                                int64_t seq, const float *vals, size_t rows,
                                double rho) {
        veil_rec_t *w = veil_codec_rec_begin(c);
        assert_int_equal(veil_rec_set_str(w, "instance", inst), 0);
        assert_int_equal(veil_rec_set_long(w, "seq", seq), 0);
        assert_int_equal(veil_rec_set_long(w, "chunk", 0), 0);
        assert_int_equal(veil_rec_set_long(w, "chunks", 1), 0);
        assert_int_equal(veil_rec_set_str(w, "block", "item_bias"), 0);
        assert_int_equal(veil_rec_set_long(w, "rows", (int64_t)rows), 0);
        assert_int_equal(veil_rec_set_long(w, "width", 1), 0);
        assert_int_equal(veil_rec_set_bytes(w, "values", vals,
                                            rows * sizeof(float)),
                         0);
        assert_int_equal(veil_rec_set_double(w, "rho", rho), 0);
        return w;
}

/* item_ids i0 and i1, for an update of two rows. */
static void ids_i0_i1(veil_rec_t *w) {
        assert_int_equal(veil_rec_set_str(veil_rec_append(w, "item_ids"), "",
                                          "i0"),
                         0);
        assert_int_equal(veil_rec_set_str(veil_rec_append(w, "item_ids"), "",
                                          "i1"),
                         0);
}

static void update_rec_ids(struct veil_codec *c, struct veil_buf *b,
                           const char *inst, const char *id0, float v,
                           double rho) {
        float vals[2] = {0.5f, v};
        veil_rec_t *w = update_begin(c, inst, 1, vals, 2, rho);
        assert_int_equal(veil_rec_set_str(veil_rec_append(w, "item_ids"), "",
                                          id0),
                         0);
        assert_int_equal(veil_rec_set_str(veil_rec_append(w, "item_ids"), "",
                                          "i1"),
                         0);
        char err[256];
        assert_int_equal(veil_codec_rec_encode(c, b, err, sizeof(err)), 0);
}

static void update_rec_of(struct veil_codec *c, struct veil_buf *b,
                          const char *inst, float v, double rho) {
        update_rec_ids(c, b, inst, "i0", v, rho);
}

static void update_rec(struct veil_codec *c, struct veil_buf *b, float v) {
        update_rec_of(c, b, "peer", v, 0.25);
}

/* The senders' ρ alone, for the file beside accountant_file: a round trip
 * keeps every sender's largest ρ, a merge never lowers one, and a damaged
 * or cut buffer is refused without changing anything. */
static void test_share_rho_file(void **st) {
        (void)st;
        unsigned char buf[256];
        double rho[3] = {0.25, 0.5, 9.0};
        struct veil_share *sh, *sh2;
        assert_int_equal(veil_share_new(&sh, "self", 0, 1 << 20), 0);
        size_t n = table(buf, 1, rho);
        assert_int_equal(veil_share_decode(sh, buf, n), 0);
        void *enc;
        size_t len;
        assert_int_equal(veil_share_rho_encode(sh, &enc, &len), 0);
        /* A restart: nothing from the topic, the file alone. */
        assert_int_equal(veil_share_new(&sh2, "self", 0, 1 << 20), 0);
        assert_int_equal(veil_share_rho_merge(sh2, enc, len), 0);
        size_t senders;
        assert_true(veil_share_others_rho(sh2, &senders) ==
                    veil_share_others_rho(sh, NULL));
        assert_int_equal(senders, 2);
        /* Positions are not in it: every update on the topic still
         * applies (the model was not restored). */
        assert_int_equal(veil_share_stats(sh2).seq, 0);
        /* Merged again over a larger known ρ: the larger stays. */
        rho[0] = 3.0;
        n = table(buf, 1, rho);
        assert_int_equal(veil_share_decode(sh2, buf, n), 0);
        double before = veil_share_others_rho(sh2, NULL);
        assert_int_equal(veil_share_rho_merge(sh2, enc, len), 0);
        assert_true(veil_share_others_rho(sh2, NULL) == before);
        /* Damaged anywhere, or cut: refused, nothing changed. */
        for (size_t k = 0; k < len; k += 7) {
                ((unsigned char *)enc)[k] ^= 0x10;
                assert_int_equal(veil_share_rho_merge(sh2, enc, len),
                                 -VEIL_EDECODE);
                ((unsigned char *)enc)[k] ^= 0x10;
        }
        assert_int_equal(veil_share_rho_merge(sh2, enc, len - 1),
                         -VEIL_EDECODE);
        assert_int_equal(veil_share_rho_merge(sh2, enc, 3), -VEIL_EDECODE);
        assert_true(veil_share_others_rho(sh2, NULL) == before);
        free(enc);
        veil_share_free(sh2);
        veil_share_free(sh);
}

/* The model-update codec (raw framing). */
static struct veil_codec *update_codec(void) {
        char err[256];
        struct veil_codec *c;
        assert_int_equal(veil_codec_new_file(&c,
                                             VEIL_SRCDIR
                                             "/schemas/model_update.avsc",
                                             VEIL_FRAMING_RAW, 0, err,
                                             sizeof(err)),
                         0);
        return c;
}

/* The sampler rate updates carry (draws_per_rho): the largest counted is
 * kept; a record whose rate is not a finite number ≥ 0 is refused whole,
 * its ρ not counted and its values not applied. */
static void test_share_draws(void **st) {
        (void)st;
        char err[256];
        struct veil_codec *c = update_codec();
        struct veil_model *m = new_model(3, 2, 4);
        struct veil_share *sh;
        assert_int_equal(veil_share_new(&sh, "self", 0, 1 << 20), 0);
        veil_share_go_live(sh, m);
        assert_true(veil_share_draws_per_rho(sh) == 0);
        /* The first raises it; none after it lowers or changes it. */
        const double rates[] = {5e9, 1e3, 0, NAN, -1, INFINITY};
        for (int i = 0; i < 6; i++) {
                float vals[2] = {0.5f, 1.0f};
                char inst[16];
                snprintf(inst, sizeof(inst), "peer%d", i);
                veil_rec_t *w = update_begin(c, inst, 1, vals, 2, 0.25);
                assert_int_equal(veil_rec_set_double(w, "draws_per_rho",
                                                     rates[i]),
                                 0);
                ids_i0_i1(w);
                struct veil_buf b = {0};
                assert_int_equal(veil_codec_rec_encode(c, &b, err,
                                                       sizeof(err)),
                                 0);
                const veil_rec_t *r;
                assert_int_equal(veil_codec_decode_rec(c, b.data, b.len, &r,
                                                       err, sizeof(err)),
                                 0);
                double rho = veil_share_others_rho(sh, NULL);
                float b0 = m->b[0];
                int rc = veil_share_on_record(sh, m, r, err, sizeof(err));
                if (i < 3) {
                        assert_int_equal(rc, 1);
                        assert_true(veil_share_others_rho(sh, NULL) > rho);
                } else {
                        assert_true(rc < 0);
                        assert_non_null(strstr(err, "draws_per_rho"));
                        assert_true(veil_share_others_rho(sh, NULL) == rho);
                        assert_true(m->b[0] == b0);
                }
                assert_true(veil_share_draws_per_rho(sh) == 5e9);
                veil_buf_free(&b);
        }
        veil_share_free(sh);
        veil_model_free(m);
        veil_codec_destroy(c);
}

/* A value that is not a finite number is refused (the record goes to the
 * dead-letter topic): one NaN would spread through every score. And own
 * records read back count when the accountant does not. */
static void test_share_records(void **st) {
        (void)st;
        char err[256];
        struct veil_codec *c = update_codec();
        struct veil_model *m = new_model(3, 2, 4);
        struct veil_share *sh;
        assert_int_equal(veil_share_new(&sh, "self", 0, 1 << 20), 0);
        veil_share_go_live(sh, m);
        struct veil_buf b = {0};
        float b0 = m->b[0], b1 = m->b[1];
        /* Finite values of 2^101 overflow the parameter they are added
         * to after 2^27 updates (the fuzzer's two did with 2^127). */
        const float bad[] = {NAN, INFINITY, -INFINITY, 0x1p101f, -0x1p101f};
        for (int i = 0; i < 5; i++) {
                update_rec(c, &b, bad[i]);
                const veil_rec_t *r;
                assert_int_equal(veil_codec_decode_rec(c, b.data, b.len, &r,
                                                       err, sizeof(err)),
                                 0);
                assert_true(veil_share_on_record(sh, m, r, err,
                                                 sizeof(err)) < 0);
                assert_non_null(strstr(err, "not a finite number"));
                assert_true(m->b[0] == b0 && m->b[1] == b1);
        }
        /* An instance id over 255 bytes, an item id over 512 (the host's
         * bound for events: recommended to everyone, a longer one made
         * every recommendation too large), an empty one: refused. */
        char longer[600];
        memset(longer, 'x', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        const veil_rec_t *r;
        for (int i = 0; i < 3; i++) {
                char inst[300] = "peer";
                const char *id0 = "i0";
                if (i == 0) {
                        memset(inst, 'p', 256);
                        inst[256] = '\0';
                } else
                        id0 = i == 1 ? longer + (600 - 1 - 513) : "";
                update_rec_ids(c, &b, inst, id0, 2.0f, 0.25);
                assert_int_equal(veil_codec_decode_rec(c, b.data, b.len, &r,
                                                       err, sizeof(err)),
                                 0);
                assert_true(veil_share_on_record(sh, m, r, err,
                                                 sizeof(err)) < 0);
                assert_non_null(strstr(err, i ? "item_ids" : "instance id"));
                assert_true(m->b[0] == b0 && m->b[1] == b1);
        }
        /* An instance id holding a NUL byte, as spent_by's are: "self\0x"
         * was taken as this instance's own record (its seq and ρ), and
         * "peer\0x" applied as peer's. The id is written with a
         * placeholder byte, then patched in the encoded record. */
        static const char *const nul_ids[] = {"selfZx", "peerZx"};
        for (int i = 0; i < 2; i++) {
                float vals[2] = {0.5f, 2.0f};
                veil_rec_t *w = update_begin(c, nul_ids[i], 99, vals, 2,
                                             0.25);
                ids_i0_i1(w);
                assert_int_equal(veil_codec_rec_encode(c, &b, err,
                                                       sizeof(err)),
                                 0);
                unsigned char *z = memmem(b.data, b.len, nul_ids[i], 6);
                assert_non_null(z);
                z[4] = '\0';
                /* The host's decoder refuses it (side records as events:
                 * no NUL in a string), so the record is dead-lettered
                 * before the share sees it. */
                assert_int_equal(veil_codec_decode_rec(c, b.data, b.len, &r,
                                                       err, sizeof(err)),
                                 -VEIL_EDECODE);
                assert_non_null(strstr(err, "NUL"));
                assert_true(m->b[0] == b0 && m->b[1] == b1);
                assert_int_equal(veil_share_stats(sh).seq, 0);
                assert_true(veil_share_own_unaccounted(sh, 0) == 0);
        }
        assert_int_equal(veil_share_stats(sh).applied_chunks, 0);
        /* At the bounds: taken. */
        char inst255[256];
        memset(inst255, 'p', 255);
        inst255[255] = '\0';
        update_rec_ids(c, &b, inst255, longer + (600 - 1 - 512), 0.0f, 0.25);
        assert_int_equal(veil_codec_decode_rec(c, b.data, b.len, &r, err,
                                               sizeof(err)),
                         0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 1);
        update_rec(c, &b, 2.0f);
        assert_int_equal(veil_codec_decode_rec(c, b.data, b.len, &r, err,
                                               sizeof(err)),
                         0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 1);
        assert_true(m->b[0] == b0 + 0.5f && m->b[1] == b1 + 2.0f);
        /* This instance's own releases read back: their ρ is a lower bound
         * of its spend. An accountant that counts less (its file was lost)
         * has them counted as another sender's; one that counts them, not.
         * Read before the first batch, as records from before a restart
         * are (after it, one above its last release is another process's:
         * test_share_clone). */
        veil_share_free(sh);
        assert_int_equal(veil_share_new(&sh, "self", 0, 1 << 20), 0);
        update_rec_of(c, &b, "self", 1.0f, 0.75);
        assert_int_equal(veil_codec_decode_rec(c, b.data, b.len, &r, err,
                                               sizeof(err)),
                         0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 0);
        assert_true(m->b[1] == b1 + 2.0f); /* own: not applied */
        double before = veil_share_others_rho(sh, NULL);
        assert_true(veil_share_own_unaccounted(sh, 0.75) == 0);
        assert_true(veil_share_others_rho(sh, NULL) == before);
        assert_true(veil_share_own_before(sh) == 0);
        assert_true(veil_share_own_unaccounted(sh, 0.1) == 0.75);
        assert_true(veil_share_others_rho(sh, NULL) >= before + 0.75);
        /* What this instance sends from now on carries them too (its
         * accountant's 0.1 and these 0.75): the others count a sender at
         * the largest ρ it sent, and would otherwise keep 0.75 while it
         * spends more. */
        assert_true(veil_share_own_before(sh) == 0.75);
        /* Asked again (another restart, its records now carrying exactly
         * what it sends: the accountant's ρ and these, rounded up), they
         * are not counted twice, at any number of restarts. */
        assert_true(veil_share_own_rho(sh, 0.1) >= 0.1 + 0.75);
        update_rec_of(c, &b, "self", 1.0f, veil_share_own_rho(sh, 0.1));
        assert_int_equal(veil_codec_decode_rec(c, b.data, b.len, &r, err,
                                               sizeof(err)),
                         0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 0);
        assert_true(veil_share_own_unaccounted(sh, 0.1) == 0);
        assert_true(veil_share_others_rho(sh, NULL) < before + 0.75 + 1e-9);
        /* Its file lost again: all it sent counts, once. */
        double sent = veil_share_own_rho(sh, 0.1);
        assert_true(veil_share_own_unaccounted(sh, 0) == sent);
        assert_true(veil_share_others_rho(sh, NULL) < before + 0.85 + 1e-9);
        assert_true(veil_share_own_before(sh) == sent);
        veil_buf_free(&b);
        veil_share_free(sh);
        veil_model_free(m);
        veil_codec_destroy(c);
}

/* An update of one item bias by (inst, lin) at seq, listing spent_by:
 * n entries of instance ids[i], lineage lins[i], ρ rhos[i]. */
struct spent {
        const char *inst;
        int64_t lin;
        double rho;
};

static const veil_rec_t *lin_rec(struct veil_codec *c, struct veil_buf *b,
                                 const char *inst, int64_t lin, int64_t seq,
                                 double rho, const struct spent *sp,
                                 size_t n) {
        float v = 1.0f;
        char err[256];
        veil_rec_t *w = update_begin(c, inst, seq, &v, 1, rho);
        assert_int_equal(veil_rec_set_long(w, "lineage", lin), 0);
        assert_int_equal(veil_rec_set_str(veil_rec_append(w, "item_ids"), "",
                                          "i0"),
                         0);
        for (size_t i = 0; i < n; i++) {
                veil_rec_t *e = veil_rec_append(w, "spent_by");
                assert_non_null(e);
                assert_int_equal(veil_rec_set_str(e, "instance", sp[i].inst),
                                 0);
                assert_int_equal(veil_rec_set_long(e, "lineage", sp[i].lin),
                                 0);
                assert_int_equal(veil_rec_set_double(e, "rho", sp[i].rho), 0);
        }
        assert_int_equal(veil_codec_rec_encode(c, b, err, sizeof(err)), 0);
        const veil_rec_t *r;
        assert_int_equal(veil_codec_decode_rec(c, b->data, b->len, &r, err,
                                               sizeof(err)),
                         0);
        return r;
}

/* A sender is an instance and its accountant file's lineage: an instance
 * whose file was lost counts twice (it was counted at the larger of its
 * two spends, and its new releases, numbered from seq 1 again, were
 * skipped as applied); spent_by counts senders whose records are gone;
 * an instance learns its own earlier lineages back from it, and the
 * checkpoint table and the file beside accountant_file keep lineages. */
static void test_share_lineages(void **st) {
        (void)st;
        char err[256];
        struct veil_codec *c = update_codec();
        struct veil_model *m = new_model(3, 2, 4);
        struct veil_share *sh;
        assert_int_equal(veil_share_new(&sh, "self", 5, 1 << 20), 0);
        veil_share_go_live(sh, m);
        struct veil_buf b = {0};
        float b0 = m->b[0];
        const veil_rec_t *r = lin_rec(c, &b, "peer", 1, 1, 0.5, NULL, 0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 1);
        r = lin_rec(c, &b, "peer", 2, 1, 0.25, NULL, 0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 1);
        assert_true(m->b[0] == b0 + 2.0f);
        size_t senders;
        assert_true(veil_share_others_rho(sh, &senders) >= 0.75);
        assert_int_equal(senders, 2);
        /* spent_by: a third sender gone from the topic, this instance's
         * earlier lineage, and its own lineage seen above its accountant
         * (a file replaced by an older copy). */
        struct spent sp[] = {{"third", 7, 0.125},
                             {"self", 3, 0.5},
                             {"self", 5, 0.9}};
        r = lin_rec(c, &b, "peer", 2, 2, 0.375, sp, 3);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 1);
        size_t lineages;
        assert_true(veil_share_own_other(sh, &lineages) >= 0.5);
        assert_int_equal(lineages, 1);
        /* peer/1 0.5, peer/2 0.375, third 0.125, self/3 0.5 */
        double others = veil_share_others_rho(sh, &senders);
        assert_true(others >= 1.5 && others < 1.5 + 1e-9);
        assert_int_equal(senders, 4);
        assert_true(veil_share_own_unaccounted(sh, 0.1) == 0.9);
        assert_true(veil_share_own_before(sh) == 0.9);
        /* Own records of another lineage count as another sender's and
         * are not applied; a lineage out of range is refused. */
        r = lin_rec(c, &b, "self", 4, 9, 0.0625, NULL, 0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 0);
        assert_true(veil_share_own_other(sh, &lineages) >= 0.5625);
        assert_int_equal(lineages, 2);
        assert_true(m->b[0] == b0 + 3.0f);
        r = lin_rec(c, &b, "peer", (int64_t)1 << 32, 3, 0.5, NULL, 0);
        assert_true(veil_share_on_record(sh, m, r, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "lineage"));
        struct spent badsp[] = {{"", 1, 0.5}};
        r = lin_rec(c, &b, "peer", 2, 3, 0.5, badsp, 1);
        assert_true(veil_share_on_record(sh, m, r, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "spent_by"));
        assert_true(m->b[0] == b0 + 3.0f);
        double all = veil_share_others_rho(sh, NULL);

        /* The checkpoint table: read by this instance under a new lineage
         * (its file lost), the writer's entry is an earlier lineage's
         * spend; under the same lineage, the accountant has it. */
        void *enc;
        size_t len;
        assert_int_equal(veil_share_encode(sh, 2.0, &enc, &len), 0);
        struct veil_share *sh2;
        assert_int_equal(veil_share_new(&sh2, "self", 6, 1 << 20), 0);
        assert_int_equal(veil_share_decode(sh2, enc, len), 0);
        assert_true(veil_share_others_rho(sh2, NULL) >= all + 2.0);
        /* self/3, self/4, and self/5: its accountant's 2 and the 0.9 it
         * did not count. */
        assert_true(veil_share_own_other(sh2, &lineages) >= 3.4625);
        assert_int_equal(lineages, 3);
        veil_share_free(sh2);
        assert_int_equal(veil_share_new(&sh2, "self", 5, 1 << 20), 0);
        assert_int_equal(veil_share_decode(sh2, enc, len), 0);
        assert_true(veil_share_others_rho(sh2, NULL) == all);
        assert_true(veil_share_own_before(sh2) == 0.9);
        /* Positions per lineage: peer/2's seq 2 is applied, peer/1's seq
         * 2 is not yet. */
        r = lin_rec(c, &b, "peer", 2, 2, 0.375, NULL, 0);
        assert_int_equal(veil_share_on_record(sh2, m, r, err, sizeof(err)),
                         0);
        veil_share_go_live(sh2, m);
        assert_true(m->b[0] == b0 + 3.0f);
        r = lin_rec(c, &b, "peer", 1, 2, 0.5, NULL, 0);
        assert_int_equal(veil_share_on_record(sh2, m, r, err, sizeof(err)),
                         1);
        assert_true(m->b[0] == b0 + 4.0f);
        veil_share_free(sh2);
        free(enc);
        /* Another instance's checkpoint (a state topic shared by a group)
         * that counted this lineage: what this instance sent, which its
         * accountant covers unless it counts less. */
        struct veil_share *sho;
        assert_int_equal(veil_share_new(&sho, "other", 9, 1 << 20), 0);
        veil_share_go_live(sho, m);
        r = lin_rec(c, &b, "self", 5, 1, 0.9, NULL, 0);
        assert_int_equal(veil_share_on_record(sho, m, r, err, sizeof(err)),
                         1);
        assert_int_equal(veil_share_encode(sho, 0.1, &enc, &len), 0);
        assert_int_equal(veil_share_new(&sh2, "self", 5, 1 << 20), 0);
        assert_int_equal(veil_share_decode(sh2, enc, len), 0);
        assert_true(veil_share_others_rho(sh2, &senders) < 0.1 + 1e-9);
        assert_int_equal(senders, 1);
        assert_true(veil_share_own_unaccounted(sh2, 1.0) == 0);
        assert_true(veil_share_own_unaccounted(sh2, 0.5) == 0.9);
        veil_share_free(sh2);
        veil_share_free(sho);
        free(enc);
        /* A veil before lineages named the releases an instance's file
         * did not count "<instance> (before its accountant file)", beside
         * the instance's entry: read from its tables, that is the
         * instance under VEIL_SHARE_LEGACY_LINEAGE, still added to the
         * instance's entry (the largest of the two was less than that
         * veil counted), and an instance id of 227 bytes or more no
         * longer makes a sender name that every reader refuses in
         * spent_by. */
        {
                static const char *const ids[] = {
                        "a", "a (before its accountant file)",
                        "self (before its accountant file)", "self"};
                static const double rhos[] = {0.25, 0.5, 0.9, 2.0};
                unsigned char t[512], *q = t;
                memcpy(q, "VDP2", 4);
                q += 4;
                put_le(&q, 4, 4);
                for (int i = 0; i < 4; i++) {
                        put_le(&q, strlen(ids[i]), 2);
                        memcpy(q, ids[i], strlen(ids[i]));
                        q += strlen(ids[i]);
                        put_le(&q, i == 0 ? 7 : 0, 8);
                        put_le(&q, 0, 4);
                        uint64_t bits;
                        memcpy(&bits, &rhos[i], sizeof(bits));
                        put_le(&q, bits, 8);
                }
                assert_int_equal(veil_share_new(&sh2, "self", 0, 1 << 20), 0);
                assert_int_equal(veil_share_decode(sh2, t, (size_t)(q - t)),
                                 0);
                double o = veil_share_others_rho(sh2, &senders);
                assert_true(o >= 1.65 && o < 1.65 + 1e-9);
                assert_int_equal(senders, 3);
                assert_true(veil_share_own_other(sh2, &lineages) >= 0.9);
                assert_int_equal(lineages, 1);
                /* a's position is a's, not the legacy name's. */
                veil_share_go_live(sh2, m);
                r = lin_rec(c, &b, "a", 0, 7, 0.25, NULL, 0);
                assert_int_equal(veil_share_on_record(sh2, m, r, err,
                                                      sizeof(err)),
                                 0);
                veil_share_free(sh2);
                /* And the .others file of that veil. */
                q = t;
                memcpy(q, "VRH1", 4);
                q += 4;
                put_le(&q, 1, 4);
                put_le(&q, strlen(ids[2]), 2);
                memcpy(q, ids[2], strlen(ids[2]));
                q += strlen(ids[2]);
                uint64_t bits;
                memcpy(&bits, &rhos[2], sizeof(bits));
                put_le(&q, bits, 8);
                crypto_generichash(q, crypto_generichash_BYTES, t,
                                   (size_t)(q - t), NULL, 0);
                q += crypto_generichash_BYTES;
                assert_int_equal(veil_share_new(&sh2, "self", 0, 1 << 20), 0);
                assert_int_equal(veil_share_rho_merge(sh2, t, (size_t)(q - t)),
                                 0);
                assert_true(veil_share_own_other(sh2, &lineages) >= 0.9);
                assert_int_equal(lineages, 1);
                veil_share_free(sh2);
        }
        /* The file beside accountant_file keeps every sender apart. */
        assert_int_equal(veil_share_rho_encode(sh, &enc, &len), 0);
        assert_int_equal(veil_share_new(&sh2, "self", 5, 1 << 20), 0);
        assert_int_equal(veil_share_rho_merge(sh2, enc, len), 0);
        assert_true(veil_share_others_rho(sh2, &senders) == all);
        assert_int_equal(senders, 6);
        free(enc);
        veil_share_free(sh2);
        veil_buf_free(&b);
        veil_share_free(sh);
        veil_model_free(m);
        veil_codec_destroy(c);
}

/* The senders' ρ add up rounded up at every addition, never below the
 * exact sum: added to nearest with one nextafter at the end, 1 and nine
 * terms just under half an ulp of 1 summed to 1 + 1 ulp, not the 1 + 3.4
 * ulp they are. */
static void test_share_sums_round_up(void **st) {
        (void)st;
        char err[256];
        struct veil_codec *c = update_codec();
        struct veil_model *m = new_model(3, 2, 4);
        struct veil_share *sh;
        assert_int_equal(veil_share_new(&sh, "self", 5, 1 << 20), 0);
        veil_share_go_live(sh, m);
        struct veil_buf b = {0};
        const double t = 0.75 * 0x1p-53; /* under half an ulp of 1 */
        struct spent sp[20];
        static const char *const names[] = {"a", "self"};
        for (int k = 0; k < 2; k++)
                for (int i = 0; i < 10; i++) /* lineages 1..10, not 5 */
                        sp[10 * k + i] = (struct spent){
                                names[k], i < 4 ? i + 1 : i + 2,
                                i ? t : 1.0};
        const veil_rec_t *r = lin_rec(c, &b, "peer", 1, 1, 0, sp, 20);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 1);
        size_t n;
        /* self's: 1 + 9t = 1 + 3.375 ulp(1), so at least 1 + 4 ulp. */
        assert_true(veil_share_own_other(sh, &n) >= 1.0 + 4 * 0x1p-52);
        assert_int_equal(n, 10);
        /* All: 2 + 18t = 2 + 3.375 ulp(2). */
        assert_true(veil_share_others_rho(sh, &n) >= 2.0 + 4 * 0x1p-51);
        assert_int_equal(n, 20);
        /* Exact sums stay within a few ulp. */
        assert_true(veil_share_others_rho(sh, NULL) < 2.0 + 64 * 0x1p-51);
        veil_buf_free(&b);
        veil_share_free(sh);
        veil_model_free(m);
        veil_codec_destroy(c);
}

/* Another instance's checkpoint (a state topic shared by a group) holds
 * the writer's releases up to its last one whole: its chunks read from the
 * topic after the restore are not applied again (the writer's entry said
 * chunk -1, and the last release was added twice), the next release's
 * are. Also from a table written so before. */
static void test_share_restore_other(void **st) {
        (void)st;
        char err[256];
        struct veil_codec *c = update_codec();
        struct veil_model *m = new_model(3, 2, 4);
        struct veil_buf b = {0};
        struct veil_share *a;
        assert_int_equal(veil_share_new(&a, "A", 3, 1 << 20), 0);
        /* A's records of before a restart: its seq is 3 now. */
        const veil_rec_t *r = lin_rec(c, &b, "A", 3, 3, 0.5, NULL, 0);
        assert_int_equal(veil_share_on_record(a, m, r, err, sizeof(err)), 0);
        assert_int_equal(veil_share_stats(a).seq, 3);
        void *enc;
        size_t len;
        assert_int_equal(veil_share_encode(a, 0.5, &enc, &len), 0);
        for (int old = 0; old < 2; old++) {
                if (old) { /* the writer's chunk as tables said: -1 */
                        unsigned char *ch = (unsigned char *)enc + len - 12;
                        memset(ch, 0xff, 4);
                }
                struct veil_share *bs;
                assert_int_equal(veil_share_new(&bs, "B", 4, 1 << 20), 0);
                assert_int_equal(veil_share_decode(bs, enc, len), 0);
                assert_true(veil_share_others_rho(bs, NULL) >= 0.5);
                veil_share_go_live(bs, m);
                float b0 = m->b[0];
                r = lin_rec(c, &b, "A", 3, 3, 0.5, NULL, 0);
                assert_int_equal(veil_share_on_record(bs, m, r, err,
                                                      sizeof(err)),
                                 0);
                assert_true(m->b[0] == b0);
                assert_int_equal(veil_share_stats(bs).applied_chunks, 0);
                r = lin_rec(c, &b, "A", 3, 4, 0.625, NULL, 0);
                assert_int_equal(veil_share_on_record(bs, m, r, err,
                                                      sizeof(err)),
                                 1);
                assert_true(m->b[0] == b0 + 1.0f);
                veil_share_free(bs);
        }
        /* A restoring its own checkpoint: its seq, nothing counted. */
        struct veil_share *a2;
        assert_int_equal(veil_share_new(&a2, "A", 3, 1 << 20), 0);
        assert_int_equal(veil_share_decode(a2, enc, len), 0);
        assert_int_equal(veil_share_stats(a2).seq, 3);
        assert_true(veil_share_others_rho(a2, NULL) == 0);
        veil_share_free(a2);
        free(enc);
        veil_share_free(a);
        veil_buf_free(&b);
        veil_model_free(m);
        veil_codec_destroy(c);
}

/* Senders are bounded: a record whose spent_by lists more than an instance
 * keeps is refused (each of thousands listed became a peer of every
 * reader, for good, and went into every update it sent, each then too
 * large for the topic); past the bound a sender is lost, ε infinite, and
 * the tables keep that, also from a file of a veil that kept them all,
 * which stops no start. */
static void spent_names(struct spent *sp, char (*names)[32], size_t n,
                        const char *prefix, double rho) {
        for (size_t i = 0; i < n; i++) {
                snprintf(names[i], sizeof(names[i]), "%.8s%zu", prefix, i);
                sp[i] = (struct spent){names[i], 1, rho};
        }
}

static void test_share_senders_bounded(void **st) {
        (void)st;
        enum { MAX = VEIL_SHARE_SENDERS_MAX };
        char err[256];
        struct veil_codec *c = update_codec();
        struct veil_model *m = new_model(3, 2, 4);
        struct veil_share *sh;
        assert_int_equal(veil_share_new(&sh, "self", 5, 1 << 20), 0);
        veil_share_go_live(sh, m);
        struct veil_buf b = {0};
        static struct spent sp[MAX + 1];
        static char names[MAX + 1][32];
        float b0 = m->b[0];
        spent_names(sp, names, MAX + 1, "s", 1e-6);
        size_t senders;
        const veil_rec_t *r = lin_rec(c, &b, "peer", 1, 1, 0.5, sp, MAX + 1);
        assert_true(veil_share_on_record(sh, m, r, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "spent_by"));
        assert_true(veil_share_others_rho(sh, &senders) == 0);
        assert_int_equal(senders, 0);
        assert_true(m->b[0] == b0);
        /* The sender and MAX - 1 others: all kept. */
        r = lin_rec(c, &b, "peer", 1, 1, 0.5, sp, MAX - 1);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 1);
        assert_true(isfinite(veil_share_others_rho(sh, &senders)));
        assert_int_equal(senders, MAX);
        assert_int_equal(veil_share_stats(sh).senders_full, 0);
        /* One more: not kept, not applied, ε infinite. */
        r = lin_rec(c, &b, "peer", 1, 2, 0.5, sp, MAX);
        assert_true(veil_share_on_record(sh, m, r, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "infinite"));
        assert_true(m->b[0] == b0 + 1.0f);
        assert_true(isinf(veil_share_others_rho(sh, NULL)));
        assert_int_equal(veil_share_stats(sh).senders_full, 1);
        /* Kept through both tables: a restart counts no less. */
        void *enc;
        size_t len;
        struct veil_share *sh2;
        assert_int_equal(veil_share_rho_encode(sh, &enc, &len), 0);
        assert_int_equal(veil_share_new(&sh2, "self", 5, 1 << 20), 0);
        assert_int_equal(veil_share_rho_merge(sh2, enc, len), 0);
        assert_true(isinf(veil_share_others_rho(sh2, &senders)));
        assert_int_equal(senders, MAX);
        free(enc);
        veil_share_free(sh2);
        assert_int_equal(veil_share_encode(sh, 0.25, &enc, &len), 0);
        assert_int_equal(veil_share_new(&sh2, "other", 9, 1 << 20), 0);
        assert_int_equal(veil_share_decode(sh2, enc, len), 0);
        assert_true(isinf(veil_share_others_rho(sh2, NULL)));
        free(enc);
        veil_share_free(sh2);
        veil_share_free(sh);
        /* A .others file and a checkpoint table of 2 MAX senders (a veil
         * that kept every sender it was told of): read without stopping
         * the start, MAX kept, ε infinite. */
        {
                size_t n = 2 * MAX, cap = 8 + n * 32 + 64;
                unsigned char *t = malloc(cap), *q = t;
                assert_non_null(t);
                memcpy(q, "VRH2", 4);
                q += 4;
                put_le(&q, n, 4);
                for (size_t i = 0; i < n; i++) {
                        char id[32];
                        int l = snprintf(id, sizeof(id), "x%zu", i);
                        put_le(&q, (uint64_t)l, 2);
                        memcpy(q, id, (size_t)l);
                        q += l;
                        put_le(&q, 1, 4);
                        double rho = 1e-6;
                        uint64_t bits;
                        memcpy(&bits, &rho, sizeof(bits));
                        put_le(&q, bits, 8);
                }
                crypto_generichash(q, crypto_generichash_BYTES, t,
                                   (size_t)(q - t), NULL, 0);
                q += crypto_generichash_BYTES;
                assert_int_equal(veil_share_new(&sh2, "self", 5, 1 << 20), 0);
                assert_int_equal(veil_share_rho_merge(sh2, t, (size_t)(q - t)),
                                 0);
                assert_true(isinf(veil_share_others_rho(sh2, &senders)));
                assert_int_equal(senders, MAX);
                assert_true(veil_share_stats(sh2).senders_full);
                veil_share_free(sh2);
                free(t);
        }
        veil_buf_free(&b);
        veil_model_free(m);
        veil_codec_destroy(c);
}

/* Two processes run as one instance on copies of one accountant file (a
 * copied volume, the same pod name): each took the other's records as its
 * own, its seq jumping to the other's, and a third instance counted both
 * as one sender, at the larger of two spends, while applying the releases
 * of both. Live, a record of its own lineage numbered above its last
 * release is the other process's: counted apart and added, its seq not
 * taken, and passed on in the tables. */
static void test_share_clone(void **st) {
        (void)st;
        char err[256];
        struct veil_codec *c = update_codec();
        struct veil_model *m = new_model(3, 2, 4);
        struct veil_buf b = {0};
        struct veil_share *sh;
        assert_int_equal(veil_share_new(&sh, "self", 5, 1 << 20), 0);
        /* Before the first batch: its own, from before a restart. */
        const veil_rec_t *r = lin_rec(c, &b, "self", 5, 3, 0.5, NULL, 0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 0);
        assert_int_equal(veil_share_stats(sh).seq, 3);
        veil_share_go_live(sh, m);
        float b0 = m->b[0];
        /* At or below its last release: its own (read back). */
        r = lin_rec(c, &b, "self", 5, 3, 0.5, NULL, 0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 0);
        assert_int_equal(veil_share_stats(sh).clone_chunks, 0);
        /* Above it: the copy's. */
        struct spent third[] = {{"third", 1, 0.125}};
        r = lin_rec(c, &b, "self", 5, 7, 0.75, third, 1);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 0);
        assert_int_equal(veil_share_stats(sh).clone_chunks, 1);
        assert_int_equal(veil_share_stats(sh).clone_seq, 7);
        assert_int_equal(veil_share_stats(sh).seq, 3);
        assert_true(m->b[0] == b0); /* not applied */
        size_t senders, lineages;
        double o = veil_share_others_rho(sh, &senders);
        assert_true(o >= 0.875 && o < 0.875 + 1e-9);
        assert_int_equal(senders, 2);
        /* Not its accountant's releases, nor an earlier file's. */
        assert_true(veil_share_own_unaccounted(sh, 0.5) == 0);
        assert_true(veil_share_own_other(sh, &lineages) == 0);
        assert_int_equal(lineages, 0);
        /* The copy spends on: its largest ρ counts. */
        r = lin_rec(c, &b, "self", 5, 8, 1.0, NULL, 0);
        assert_int_equal(veil_share_on_record(sh, m, r, err, sizeof(err)), 0);
        assert_int_equal(veil_share_stats(sh).clone_chunks, 2);
        assert_true(veil_share_others_rho(sh, NULL) >= 1.125);
        /* Another instance restoring this one's checkpoint counts the
         * writer (0.5) and the copy (1.0) apart, and third. */
        void *enc;
        size_t len;
        assert_int_equal(veil_share_encode(sh, 0.5, &enc, &len), 0);
        struct veil_share *z;
        assert_int_equal(veil_share_new(&z, "z", 9, 1 << 20), 0);
        assert_int_equal(veil_share_decode(z, enc, len), 0);
        assert_true(veil_share_others_rho(z, &senders) >= 1.625);
        assert_int_equal(senders, 3);
        veil_share_free(z);
        free(enc);
        /* And a restart of this one, from the file beside the accountant. */
        assert_int_equal(veil_share_rho_encode(sh, &enc, &len), 0);
        assert_int_equal(veil_share_new(&z, "self", 5, 1 << 20), 0);
        assert_int_equal(veil_share_rho_merge(z, enc, len), 0);
        assert_true(veil_share_others_rho(z, NULL) >= 1.125);
        veil_share_free(z);
        free(enc);
        veil_share_free(sh);
        veil_buf_free(&b);
        veil_model_free(m);
        veil_codec_destroy(c);
}

/* ---- checkpoint and restore -------------------------------------------- */

static void test_checkpoint_roundtrip(void **st) {
        (void)st;
        char path[256], path2[256], err[256];
        const void *ex;
        size_t ex_len;
        tmp_path(path, sizeof(path), "ck1");
        tmp_path(path2, sizeof(path2), "ck2");
        struct veil_model *m = new_model(6, 3, 5);
        struct veil_learner *L;
        struct veil_learn_cfg lc = {0.1f, 1, 1, 4, 4, 0};
        assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
        struct veil_dp_cfg c = cfg_of(path, 2.0);
        struct veil_dp *dp;
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        struct fake f;
        fake_init(&f, m);
        for (int i = 0; i < 3; i++) {
                veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err, sizeof(err));
                assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)),
                                 1);
        }
        void *data;
        size_t len;
        assert_int_equal(veil_ckpt_write(m, veil_dp_accountant(dp), NULL, 0,
                                         &data, &len),
                         0);
        double eps3 = veil_dp_stats(dp).epsilon;

        /* Into a fresh model whose catalog lists the items in another
         * order, with a fresh accountant: rows follow the ids, ε comes
         * back. */
        char ierr[256], id[32];
        struct veil_catalog *cat;
        assert_int_equal(veil_catalog_new(&cat, 6, 5, ierr, sizeof(ierr)), 0);
        struct veil_model *m2;
        assert_int_equal(veil_model_new(&m2, cat, 3, 5, 0.1f, 99, ierr,
                                        sizeof(ierr)),
                         0);
        for (int i = 5; i >= 0; i--) {
                snprintf(id, sizeof(id), "i%d", i);
                veil_model_item(m2, id, 1);
        }
        struct veil_dp_cfg c2 = cfg_of(path2, 2.0);
        struct veil_dp *dp2;
        assert_int_equal(veil_dp_new(&dp2, &c2, m2, err, sizeof(err)), 0);
        assert_int_equal(veil_ckpt_read(m2, veil_dp_accountant_mut(dp2), data,
                                        len, &ex, &ex_len, err, sizeof(err)),
                         0);
        assert_int_equal(veil_dp_restored(dp2, err, sizeof(err)), 0);
        assert_true(veil_dp_stats(dp2).epsilon >= eps3);
        assert_int_equal(m2->steps, m->steps);
        for (int i = 0; i < 6; i++) {
                snprintf(id, sizeof(id), "i%d", i);
                int32_t r = veil_model_item(m2, id, 0);
                assert_true(r == 5 - i);
                assert_memory_equal(m2->V + (size_t)r * 3, m->V + i * 3,
                                    3 * sizeof(float));
                assert_true(m2->b[r] == m->b[i]);
        }
        assert_memory_equal(m2->E, m->E, 5 * 3 * sizeof(float));

        /* An older checkpoint never lowers ε: spend more, restore the old
         * one, the spend stays. */
        for (int i = 0; i < 3; i++) {
                veil_dp_hook(dp2, fake_grad(&f, m2, 1, 1), err, sizeof(err));
                assert_int_equal(veil_dp_release(dp2, L, m2, err,
                                                 sizeof(err)),
                                 1);
        }
        double eps6 = veil_dp_stats(dp2).epsilon;
        assert_true(eps6 > eps3);
        assert_int_equal(veil_ckpt_read(m2, veil_dp_accountant_mut(dp2), data,
                                        len, &ex, &ex_len, err, sizeof(err)),
                         0);
        assert_int_equal(veil_dp_restored(dp2, err, sizeof(err)), 0);
        assert_true(veil_dp_stats(dp2).epsilon >= eps6);

        /* A model learned without DP (no accountant record) is refused
         * by a private stage: it would be released under an ε that does
         * not count it. A non-private stage takes it. */
        void *plain;
        size_t plain_len;
        assert_int_equal(veil_ckpt_write(m, NULL, NULL, 0, &plain,
                                         &plain_len),
                         0);
        float b0 = m2->b[0];
        assert_int_equal(veil_ckpt_read(m2, veil_dp_accountant_mut(dp2),
                                        plain, plain_len, &ex, &ex_len, err,
                                        sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "without differential privacy"));
        assert_true(m2->b[0] == b0);
        assert_int_equal(veil_ckpt_read(m2, NULL, plain, plain_len, &ex,
                                        &ex_len, err, sizeof(err)),
                         0);
        free(plain);

        /* Another dim: refused, with the two ways on. */
        struct veil_catalog *cat4;
        assert_int_equal(veil_catalog_new(&cat4, 6, 5, ierr, sizeof(ierr)),
                         0);
        struct veil_model *m4;
        assert_int_equal(veil_model_new(&m4, cat4, 4, 5, 0.1f, 99, ierr,
                                        sizeof(ierr)),
                         0);
        assert_int_equal(veil_ckpt_read(m4, NULL, data, len, &ex, &ex_len,
                                        err, sizeof(err)),
                         -VEIL_EDECODE);
        if (!strstr(err, "the checkpoint's model has dim 3 and "
                         "feature_space 5, this stage 4 and 5: set them "
                         "back, or, to start the model empty, give the "
                         "pipeline a new state topic (state.topic) and "
                         "restart"))
                fail_msg("got '%s'", err);
        veil_model_free(m4);

        /* Damaged buffers change nothing. */
        float v0 = m2->V[0];
        assert_int_equal(veil_ckpt_read(m2, NULL, data, len - 1, &ex, &ex_len,
                                        err,
                                        sizeof(err)),
                         -VEIL_EDECODE);
        ((unsigned char *)data)[0] = 'X';
        assert_int_equal(veil_ckpt_read(m2, NULL, data, len, &ex, &ex_len,
                                        err,
                                        sizeof(err)),
                         -VEIL_EDECODE);
        assert_true(m2->V[0] == v0);
        free(data);
        fake_free(&f);
        veil_dp_free(dp);
        veil_dp_free(dp2);
        veil_learner_free(L);
        veil_model_free(m);
        veil_model_free(m2);
        unlink_acc(path);
        unlink_acc(path2);
}

/* ---- empirical privacy ------------------------------------------------- */

/* Runs one step n times on D (the others' sum, 0.3 on V[0][0]) or D' (plus
 * one user's contribution of norm C = 1 on the same coordinate) and
 * histograms the released V[0][0] (SGD with lr = step: the model moves by
 * minus the noisy sum). */
static void histogram(double sigma, float x, int n, int *hist, int bins,
                      double lo, double hi, double *eps_out) {
        char path[256], err[256];
        tmp_path(path, sizeof(path), "emp");
        struct veil_model *m = new_model(2, 1, 1);
        struct veil_learner *L;
        struct veil_learn_cfg lc = {0.1f, 1, 1, 2, 4, 0};
        assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
        struct veil_dp_cfg c = cfg_of(path, sigma);
        /* A fixed seed: the test must not fail by chance (1 in ~400 at
         * 4 standard errors over 80 comparisons). The production stream
         * is exercised by test_noise. */
        struct veil_dp *dp;
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        struct fake f;
        fake_init(&f, m);
        for (int i = 0; i < n; i++) {
                m->V[0] = 0;
                veil_dp_hook(dp, fake_grad(&f, m, x, 1), err, sizeof(err));
                assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)),
                                 1);
                double y = -(double)m->V[0];
                int k = (int)floor((y - lo) / (hi - lo) * bins);
                if (k >= 0 && k < bins)
                        hist[k]++;
        }
        /* ε of one release (ρ = 1/(2σ²)) at δ. */
        double rho = 1 / (2 * veil_dp_stats(dp).sigma_acc *
                          veil_dp_stats(dp).sigma_acc);
        assert_int_equal(veil_dp_epsilon(rho, c.delta, eps_out, NULL, err,
                                         sizeof(err)),
                         0);
        veil_dp_free(dp);
        fake_free(&f);
        veil_learner_free(L);
        veil_model_free(m);
        unlink_acc(path);
}

/* Largest excess, over bins, of P(bin) − e^ε P'(bin) − δ beyond 4
 * standard errors, both directions. */
static double excess(const int *a, const int *b, int bins, int n, double eps,
                     double delta) {
        double worst = -1;
        for (int k = 0; k < bins; k++)
                for (int dir = 0; dir < 2; dir++) {
                        double p = (double)(dir ? a[k] : b[k]) / n;
                        double q = (double)(dir ? b[k] : a[k]) / n;
                        double se = sqrt((p + exp(2 * eps) * q) / n + 1.0 / n / n);
                        double e = p - exp(eps) * q - delta - 4 * se;
                        if (e > worst)
                                worst = e;
                }
        return worst;
}

static void test_empirical_privacy(void **st) {
        (void)st;
        enum { N = 40000, BINS = 40 };
        static int a[BINS], b[BINS];
        double eps;
        const double sigma = 2.0, lo = -8, hi = 9;
        histogram(sigma, 0.3f, N, a, BINS, lo, hi, &eps);
        histogram(sigma, 1.3f, N, b, BINS, lo, hi, &eps);
        assert_true(eps > 0 && eps < 10);
        assert_true(excess(a, b, BINS, N, eps, 1e-6) <= 0);

        /* The test has power: the same ε claimed for a mechanism with a
         * sixth of the noise is caught. */
        static int c[BINS], d[BINS];
        double eps_weak;
        histogram(sigma / 6, 0.3f, N, c, BINS, -2, 3, &eps_weak);
        histogram(sigma / 6, 1.3f, N, d, BINS, -2, 3, &eps_weak);
        assert_true(excess(c, d, BINS, N, eps, 1e-6) > 0);
}

/* ---- the tree mechanism ------------------------------------------------ */

/* Trees of 4 steps: a user joins one step per tree; the accountant charges
 * a tree ⌈log2(k+1)⌉/(2σ²) after k steps; a restart opens a new tree. */
static void test_tree_mechanism(void **st) {
        (void)st;
        char path[256], err[256];
        tmp_path(path, sizeof(path), "tree");
        struct veil_model *m = new_model(4, 2, 4);
        struct veil_learner *L;
        struct veil_learn_cfg lc = {0.1f, 1, 1, 4, 4, 0};
        assert_int_equal(veil_learner_new(&L, &lc, m, 1), 0);
        struct veil_dp_cfg c = cfg_of(path, 2.0);
        c.mode = VEIL_DP_MODE_TREE;
        c.tree_steps = 4;
        c.adagrad = 0;
        c.max_contrib = 1; /* tree_participations */
        struct veil_dp *dp;
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        double s2 = 2 * pow(veil_dp_stats(dp).sigma_acc, 2);
        struct fake f;
        fake_init(&f, m);
        uint64_t b = 0;
        double want[] = {1, 2, 2, 3}; /* ⌈log2(k+1)⌉ */
        for (int k = 1; k <= 4; k++) {
                b++;
                /* alice joins the first step of the tree only. */
                assert_int_equal(veil_dp_admit(dp, "alice", b), k == 1);
                assert_int_equal(veil_dp_admit(dp, "bob", b), k == 1);
                assert_int_equal(veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err,
                                              sizeof(err)),
                                 1);
                assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)),
                                 1);
                struct veil_dp_stats ds = veil_dp_stats(dp);
                assert_true(fabs(ds.rho - want[k - 1] / s2) <
                            1e-9 * ds.rho + 1e-15);
                assert_int_equal(ds.tree, k < 4 ? 0 : 1);
                assert_int_equal(ds.tree_pos, k < 4 ? (uint64_t)k : 0);
        }
        assert_int_equal(veil_dp_stats(dp).refused_step, 0);
        assert_int_equal(veil_dp_stats(dp).refused_window, 6);
        /* Tree 1: alice may join again. */
        assert_int_equal(veil_dp_admit(dp, "alice", ++b), 1);
        assert_int_equal(veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err,
                                      sizeof(err)),
                         1);
        assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)), 1);
        double rho = veil_dp_stats(dp).rho;
        assert_true(fabs(rho - 4 / s2) < 1e-9 * rho);
        veil_dp_free(dp);

        /* A restart mid-tree: the saved spend is kept, and the next step
         * opens tree 2 (its first leaf costs one node), where alice may
         * join. */
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        assert_true(veil_dp_stats(dp).rho >= rho);
        assert_int_equal(veil_dp_stats(dp).tree, 2);
        assert_int_equal(veil_dp_admit(dp, "alice", ++b), 1);
        assert_int_equal(veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err,
                                      sizeof(err)),
                         1);
        assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)), 1);
        assert_true(fabs(veil_dp_stats(dp).rho - 5 / s2) < 1e-9 * rho);
        veil_dp_free(dp);
        unlink_acc(path);

        /* Two participations per tree: alice joins steps 1 and 2 of a
         * tree, not 3 or 4, and each level costs 2·min(2, 2^l): 2 at the
         * leaves, 4 at levels 1 and 2 (both her steps in node [1,2]). */
        c.max_contrib = 2;
        assert_int_equal(veil_dp_new(&dp, &c, m, err, sizeof(err)), 0);
        double want2[] = {2, 6, 6, 10};
        for (int k = 1; k <= 4; k++) {
                b++;
                assert_int_equal(veil_dp_admit(dp, "alice", b), k <= 2);
                assert_int_equal(veil_dp_hook(dp, fake_grad(&f, m, 1, 1), err,
                                              sizeof(err)),
                                 1);
                assert_int_equal(veil_dp_release(dp, L, m, err, sizeof(err)),
                                 1);
                double r = veil_dp_stats(dp).rho;
                assert_true(fabs(r - want2[k - 1] / s2) < 1e-9 * r);
        }
        assert_int_equal(veil_dp_admit(dp, "alice", ++b), 1); /* tree 1 */
        veil_dp_free(dp);

        fake_free(&f);
        veil_learner_free(L);
        veil_model_free(m);
        unlink_acc(path);
}

/* Steps of event time: where an event goes against the open step (the
 * clock less the lateness), the next step refused across a window or a
 * tree's end, counted; and the configurations refused. */
static struct veil_dp_cfg event_cfg(const char *path, uint32_t max_contrib) {
        struct veil_dp_cfg c = cfg_of(path, 1.0);
        c.step_ms = 1000;
        c.event_time = 1;
        c.lateness_ms = 200;
        c.max_contrib = max_contrib;
        return c;
}

static void test_event_place(void **st) {
        (void)st;
        char err[256];
        struct veil_dp_cfg c = event_cfg(NULL, 3);
        c.window_steps = 4;
        struct fx x;
        fx_open(&x, "place", c);
        struct veil_dp *dp = x.dp;
        veil_dp_clock(dp, 10100); /* 10100 − 200: step 9 is open */
        assert_int_equal(veil_dp_step(dp), 9);
        assert_int_equal(veil_dp_place(dp, 9999), VEIL_DP_OPEN);
        assert_int_equal(veil_dp_place(dp, 10050), VEIL_DP_NEXT);
        assert_int_equal(veil_dp_place(dp, 8999), VEIL_DP_LATE);
        assert_int_equal(veil_dp_place(dp, 11000), VEIL_DP_EARLY);
        struct veil_dp_stats s = veil_dp_stats(dp);
        assert_int_equal(s.late, 1);
        assert_int_equal(s.early, 1);
        /* A user in the open step and the next, once each. */
        assert_int_equal(veil_dp_admit_next(dp, "ann", 1), 1);
        assert_int_equal(veil_dp_admit(dp, "ann", 1), 1);
        assert_int_equal(veil_dp_admit(dp, "ann", 2), 0);
        assert_int_equal(veil_dp_admit_next(dp, "ann", 2), 0);
        veil_dp_clock(dp, 10150); /* past 9's end, within the lateness */
        assert_false(veil_dp_ready(dp));
        veil_dp_clock(dp, 10250); /* step 10 opens: 9 is due */
        assert_true(veil_dp_ready(dp));
        assert_int_equal(veil_dp_release(dp, x.L, x.m, err, sizeof(err)), 1);
        assert_int_equal(veil_dp_step(dp), 10);
        /* ann was admitted to 10 already (held): not again. */
        assert_int_equal(veil_dp_admit(dp, "ann", 3), 0);
        /* Step 11 is the last of window 2 (steps 8 to 11): 12 begins
         * window 3, so an event of 12 is not held while 11 is open. */
        veil_dp_clock(dp, 11250);
        assert_int_equal(veil_dp_release(dp, x.L, x.m, err, sizeof(err)), 1);
        assert_int_equal(veil_dp_step(dp), 11);
        assert_int_equal(veil_dp_place(dp, 12050), VEIL_DP_EARLY);
        assert_int_equal(veil_dp_place(dp, 11500), VEIL_DP_OPEN);
        fx_close(&x);

        /* A batch in the next step's own time (within the open one's
         * lateness), then none until two steps on: the next step is
         * released too, after the open one, since it may hold events. */
        c = event_cfg(NULL, 1);
        fx_open(&x, "place_chain", c);
        dp = x.dp;
        veil_dp_clock(dp, 9500);  /* step 9 open, in its own time */
        veil_dp_clock(dp, 10150); /* a batch in step 10's time */
        assert_false(veil_dp_ready(dp));
        /* M = 1: held for 10, then not in 9 as well. */
        assert_int_equal(veil_dp_admit_next(dp, "cy", 1), 1);
        assert_int_equal(veil_dp_admit(dp, "cy", 1), 0);
        assert_int_equal(veil_dp_stats(dp).refused_window, 1);
        /* dee: in 9, then held for 10 after 9's release (prev right). */
        assert_int_equal(veil_dp_admit(dp, "dee", 1), 1);
        veil_dp_clock(dp, 12300); /* two steps on: 9, then 10, then 12 */
        assert_int_equal(veil_dp_release(dp, x.L, x.m, err, sizeof(err)), 1);
        assert_int_equal(veil_dp_step(dp), 10);
        assert_true(veil_dp_ready(dp));
        assert_int_equal(veil_dp_release(dp, x.L, x.m, err, sizeof(err)), 1);
        assert_int_equal(veil_dp_step(dp), 12);
        assert_false(veil_dp_ready(dp));
        fx_close(&x);

        /* prev: a user of step k held for k + 1 may still join k once
         * (a late event), and not when they were in k already. */
        c.max_contrib = 5;
        fx_open(&x, "place_prev", c);
        dp = x.dp;
        veil_dp_clock(dp, 10100); /* step 9 open */
        assert_int_equal(veil_dp_admit(dp, "eve", 1), 1);      /* 9 */
        veil_dp_clock(dp, 10250);
        assert_int_equal(veil_dp_release(dp, x.L, x.m, err, sizeof(err)), 1);
        assert_int_equal(veil_dp_admit_next(dp, "eve", 2), 1); /* 11 */
        assert_int_equal(veil_dp_admit(dp, "eve", 2), 1);      /* 10 */
        assert_int_equal(veil_dp_admit(dp, "eve", 3), 0);      /* 10 again */
        assert_int_equal(veil_dp_admit_next(dp, "eve", 3), 0); /* 11 again */
        fx_close(&x);

        /* The tree: the next step after a tree's last is another tree. */
        c = event_cfg(NULL, 1);
        c.mode = VEIL_DP_MODE_TREE;
        c.tree_steps = 2;
        fx_open(&x, "place_tree", c);
        dp = x.dp;
        veil_dp_clock(dp, 5300); /* step 5, the tree's first */
        assert_int_equal(veil_dp_place(dp, 6050), VEIL_DP_NEXT);
        veil_dp_clock(dp, 6300);
        assert_int_equal(veil_dp_release(dp, x.L, x.m, err, sizeof(err)), 1);
        /* step 6 is the tree's second and last */
        assert_int_equal(veil_dp_place(dp, 7050), VEIL_DP_EARLY);
        fx_close(&x);

        /* Refused: a lateness not below the step, event time uncounted. */
        struct veil_dp *bad;
        char path[256];
        tmp_path(path, sizeof(path), "place_bad");
        struct veil_model *m = new_model(4, 2, 4);
        c = event_cfg(path, 1);
        c.lateness_ms = 1000;
        assert_int_equal(veil_dp_new(&bad, &c, m, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "longer than the lateness"));
        c.step_ms = 0;
        c.lateness_ms = 0;
        assert_int_equal(veil_dp_new(&bad, &c, m, err, sizeof(err)),
                         -VEIL_EINVAL);
        veil_model_free(m);
        unlink_acc(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_admit_bounds),
                cmocka_unit_test(test_file_owners),
                cmocka_unit_test(test_step_cap),
                cmocka_unit_test(test_schedule_independent),
                cmocka_unit_test(test_clock_steps),
                cmocka_unit_test(test_event_place),
                cmocka_unit_test(test_hook_sum_bounded),
                cmocka_unit_test(test_charged_saved_before_apply),
                cmocka_unit_test(test_budget_freezes),
                cmocka_unit_test(test_others_count),
                cmocka_unit_test(test_share_table_rho),
                cmocka_unit_test(test_share_rho_file),
                cmocka_unit_test(test_share_records),
                cmocka_unit_test(test_share_draws),
                cmocka_unit_test(test_share_lineages),
                cmocka_unit_test(test_share_sums_round_up),
                cmocka_unit_test(test_share_restore_other),
                cmocka_unit_test(test_share_senders_bounded),
                cmocka_unit_test(test_share_clone),
                cmocka_unit_test(test_checkpoint_roundtrip),
                cmocka_unit_test(test_empirical_privacy),
                cmocka_unit_test(test_tree_mechanism),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
