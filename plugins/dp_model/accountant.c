/*
 * accountant.c — zCDP accounting, the (ε, δ) conversion, and the durable
 * record that keeps the spend from ever going down (see accountant.h).
 */
#include "accountant.h"
#include "le.h"
#include "noise.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "veil/veil.h"

#define RECORD_MAGIC "VEILACCT"
/* Format 2 keeps the lineage in what format 1 reserved (zero there, so a
 * format-1 record reads as lineage 0). Format 3 adds draws_per_rho and
 * takes its 8 bytes from the checksum (BLAKE2b-128 still finds any
 * corruption a disk makes). */
#define RECORD_FORMAT 3u
/* Bytes covered by the checksum, which fills the rest of the record. */
#define RECORD_BODY(format) ((format) >= 3 ? 112u : 104u)
#define FLAG_HAS_UNIT 1u
#define FLAG_PENDING 2u

/* The α search: log(α-1) on a grid from e^-14 to e^37 (the optimum is near
 * √(log(1/δ)/ρ), so this covers ρ from ~10^-30 to 10^6), then golden-section
 * refinement around the best grid point. ε(t) is unimodal wherever ε is
 * above ~10^-7, so a grid of unit steps finds the basin; 40 golden steps
 * narrow the bracket of 2 to 10^-8, where ε is flat to ~10^-16. Every value
 * kept was evaluated, so the search can only over-report. */
#define T_MIN (-14.0)
#define T_MAX 37.0
#define T_STEP 1.0
#define GOLDEN_ITERS 40

struct veil_accountant {
        struct veil_dp_mech mech;
        double rho;
        uint64_t steps;
        uint64_t version;
        /* The unit (window or tree) the last release belonged to. */
        int has_unit;
        uint64_t unit;
        uint64_t unit_steps;    /* releases in the unit, across sessions */
        uint64_t classes;       /* tree: participations charged per user */
        int pending;            /* tree: a restore opened a new session */
        uint64_t session_steps; /* gaussian: releases in the unit since the
                                 * last restore; deliberately not saved */
        uint32_t lineage;       /* the file's: drawn when it is created */
        double draws;           /* draws_per_rho: the mechanism's, or a
                                 * restored record's or another sender's
                                 * when larger */
};

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        va_list ap;
        if (!errstr || !errstr_size)
                return;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

/* Positive x computed with at most 3 roundings of relative 2^-53 each:
 * the result is ≥ the exact value. */
static double round_up(double x) {
        return x + x * (4 * DBL_EPSILON);
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---------------------------------------------------------------- */
/* Mechanisms and the (ε, δ) conversion                              */
/* ---------------------------------------------------------------- */

uint64_t veil_dp_tree_depth(uint64_t t) {
        uint64_t d = 0;
        while (t) {
                d++;
                t >>= 1;
        }
        return d; /* floor(log2 t) + 1 = ⌈log2(t+1)⌉ */
}

static int check_mech(const struct veil_dp_mech *m, int need_sigma,
                      char *errstr, size_t errstr_size) {
        if (!m) {
                errf(errstr, errstr_size, "dp_model accountant: no mechanism");
                return -VEIL_EINVAL;
        }
        if (m->kind != VEIL_DP_GAUSSIAN && m->kind != VEIL_DP_TREE) {
                errf(errstr, errstr_size,
                     "dp_model accountant: mechanism kind %d is unknown "
                     "(valid: gaussian, tree)",
                     (int)m->kind);
                return -VEIL_EINVAL;
        }
        if (need_sigma && !(isfinite(m->sigma) && m->sigma > 0)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: noise multiplier sigma must be a "
                     "finite number > 0, got %g",
                     m->sigma);
                return -VEIL_EINVAL;
        }
        if (m->kind == VEIL_DP_GAUSSIAN && m->max_per_user == 0) {
                errf(errstr, errstr_size,
                     "dp_model accountant: gaussian needs max_per_user "
                     "(examples per user per window) >= 1");
                return -VEIL_EINVAL;
        }
        if (m->kind == VEIL_DP_TREE && m->tree_steps == 0) {
                errf(errstr, errstr_size,
                     "dp_model accountant: tree needs tree_steps (steps per "
                     "tree) >= 1");
                return -VEIL_EINVAL;
        }
        if (m->units == 0 || m->units > (1ull << 53)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: units (windows or trees in the "
                     "horizon) must be in [1, 2^53], got %llu",
                     (unsigned long long)m->units);
                return -VEIL_EINVAL;
        }
        return 0;
}

/* A user who joins p steps of one tree: the sensitivity² of level l of
 * the tree (nodes of 2^l steps, each noised once) in units of C². A node
 * holding n of the user's steps moves by up to n·C, and at most
 * min(p, 2^l) of the p steps fit in one node, so Σ_nodes n² ≤
 * p·min(p, 2^l). One participation: 1 per level, TensorFlow Privacy's
 * ⌈log2(T+1)⌉ per tree. Two (a user before and after a restart that
 * continues the tree): 2 at the leaves, 4 at every level above, where
 * both steps may sit in one node — not 2 per level: counted as two
 * separate paths, a continued tree would be under-charged. */
static uint64_t level_units(uint64_t p, uint64_t l) {
        uint64_t cap = l >= 63 ? UINT64_MAX : (uint64_t)1 << l;
        uint64_t c = p < cap ? p : cap;
        return c && p > UINT64_MAX / c ? UINT64_MAX : p * c;
}

/* Participations per user per tree (0, as older callers pass, is 1). */
static uint64_t tree_k(const struct veil_dp_mech *m) {
        return m->max_per_user ? m->max_per_user : 1;
}

static double mech_rho(const struct veil_dp_mech *m, double sigma) {
        uint64_t per = 0;
        if (m->kind == VEIL_DP_GAUSSIAN)
                per = m->max_per_user;
        else
                for (uint64_t l = 0; l < veil_dp_tree_depth(m->tree_steps);
                     l++)
                        per = sat_add(per, level_units(tree_k(m), l));
        /* Rounded up unless every step was exact (σ = 2: ρ is 0.5, and
         * would otherwise be printed as 0.500001 by a calculator that
         * rounds its statements up). */
        double num = (double)m->units * (double)per, s2 = sigma * sigma,
               den = 2.0 * s2, q = num / den;
        int exact = m->units <= (UINT64_C(1) << 53) &&
                    per <= (UINT64_C(1) << 53) &&
                    fma((double)m->units, (double)per, -num) == 0 &&
                    fma(sigma, sigma, -s2) == 0 && isfinite(den) &&
                    fma(q, den, -num) == 0;
        return exact ? q : round_up(q);
}

int veil_dp_rho(const struct veil_dp_mech *m, double *rho, char *errstr,
                size_t errstr_size) {
        int rc = check_mech(m, 1, errstr, errstr_size);
        if (rc)
                return rc;
        *rho = mech_rho(m, m->sigma);
        return 0;
}

/* ε at α = 1 + e^t, plus a margin far above its rounding error: each term
 * carries a few ulps, so 1e-12 of their total magnitude is safe by ~10^3. */
static double eps_at(double rho, double log_delta, double t) {
        double u = exp(t); /* α - 1; any u is a valid order */
        double l1u = log1p(u);
        double a = rho + rho * u;             /* ρα */
        double b = t - l1u;                   /* log((α-1)/α) */
        double c = -(log_delta + l1u) / u;    /* -(log δ + log α)/(α-1) */
        double mag = rho + fabs(rho * u) + fabs(t) + l1u +
                     fabs(log_delta / u) + fabs(l1u / u);
        return (a + b + c) + 1e-12 * mag;
}

static int check_rho_delta(double rho, double delta, char *errstr,
                           size_t errstr_size) {
        if (!(isfinite(rho) && rho >= 0)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: rho must be finite and >= 0, got %g",
                     rho);
                return -VEIL_EINVAL;
        }
        if (!(delta > 0 && delta < 1)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: delta must be in (0, 1), got %g",
                     delta);
                return -VEIL_EINVAL;
        }
        return 0;
}

static double epsilon_of(double rho, double delta, double *alpha) {
        double ld = log(delta);
        double best_t = T_MIN, best = eps_at(rho, ld, T_MIN);
        double lo, hi, x1, x2, f1, f2;
        const double phi = 0.6180339887498949;

        for (double t = T_MIN + T_STEP; t <= T_MAX; t += T_STEP) {
                double e = eps_at(rho, ld, t);
                if (e < best) {
                        best = e;
                        best_t = t;
                }
        }
        /* Refine around the best grid point. Only values actually
         * evaluated are ever kept, so refinement cannot make ε unsafe. */
        lo = best_t - T_STEP;
        hi = best_t + T_STEP;
        x1 = hi - phi * (hi - lo);
        x2 = lo + phi * (hi - lo);
        f1 = eps_at(rho, ld, x1);
        f2 = eps_at(rho, ld, x2);
        for (int i = 0; i < GOLDEN_ITERS; i++) {
                if (f1 < f2) {
                        hi = x2;
                        x2 = x1;
                        f2 = f1;
                        x1 = hi - phi * (hi - lo);
                        f1 = eps_at(rho, ld, x1);
                } else {
                        lo = x1;
                        x1 = x2;
                        f1 = f2;
                        x2 = lo + phi * (hi - lo);
                        f2 = eps_at(rho, ld, x2);
                }
                if (f1 < best) {
                        best = f1;
                        best_t = x1;
                }
                if (f2 < best) {
                        best = f2;
                        best_t = x2;
                }
        }
        if (alpha)
                *alpha = 1.0 + exp(best_t);
        /* Below 0 the bound says nothing more than ε = 0 does. */
        return best > 0 ? best : 0.0;
}

int veil_dp_epsilon(double rho, double delta, double *eps, double *alpha,
                    char *errstr, size_t errstr_size) {
        int rc = check_rho_delta(rho, delta, errstr, errstr_size);
        if (rc)
                return rc;
        *eps = epsilon_of(rho, delta, alpha);
        return 0;
}

/* See accountant.h for the bound. In logarithms, so that e^ε cannot
 * overflow: the exact mechanism gets δ_c = δ/(1+η)^N - N·τ·(1 +
 * e^ε_c·(1-η)^-N), its ε_c is first bounded by ε at δ/(1+η)^N plus one
 * (more than the N·τ share can cost while it is far below δ), and that
 * bound is checked afterwards. */
static double epsilon_sampled(double rho, double delta, double per_rho) {
        double n = rho * per_rho;
        if (!(n > 0))
                return epsilon_of(rho, delta, NULL);
        n = nextafter(n, INFINITY);
        const double eta = VEIL_NOISE_PMF_ERR, tau = VEIL_NOISE_TAIL_TV;
        double up = n * log1p(eta), down = -n * log1p(-eta); /* ≥ 0 */
        double d0 = exp(log(delta) - up);
        if (!(d0 > 0))
                return INFINITY;
        double cap = epsilon_of(rho, d0, NULL) + 1;
        /* log(N·τ·(1 + e^cap·(1-η)^-N)) */
        double x = cap + down;
        /* log(1 + e^x) ≤ x + e^-x: no overflow, never below */
        double l_tail = log(n) + log(tau) +
                        (x > 30 ? x + exp(-x) : log1p(exp(x)));
        /* The tail taken with 10^-12 to spare (its logarithm is near 78
         * at most while it is below δ: a few 10^-14 of rounding), and
         * what is left rounded down past exp's and log's own error. */
        double tail = exp(l_tail), dc = d0 - tail * (1 + 1e-12);
        dc = nextafter(dc * (1 - 4 * DBL_EPSILON), 0);
        if (!(dc > 0))
                return INFINITY;
        double e = epsilon_of(rho, dc, NULL);
        if (!(e <= cap))
                return INFINITY;
        /* N·ln((1+η)/(1-η)), rounded up */
        return nextafter(e + (up + down) * (1 + 8 * DBL_EPSILON), INFINITY);
}

int veil_dp_epsilon_sampled(double rho, double delta, double draws_per_rho,
                            double *eps, char *errstr, size_t errstr_size) {
        int rc = check_rho_delta(rho, delta, errstr, errstr_size);
        if (rc)
                return rc;
        if (!(draws_per_rho >= 0)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: draws per unit of rho must be "
                     ">= 0, got %g",
                     draws_per_rho);
                return -VEIL_EINVAL;
        }
        *eps = epsilon_sampled(rho, delta, draws_per_rho);
        return 0;
}

double veil_dp_draws_per_rho(const struct veil_dp_mech *m) {
        double d = (double)m->coords * 2.0 * m->sigma * m->sigma;
        return d > 0 ? round_up(d) : 0;
}

int veil_dp_noise_for_epsilon(const struct veil_dp_mech *m, double eps,
                              double delta, double *sigma, char *errstr,
                              size_t errstr_size) {
        double lo, hi;
        int rc = check_mech(m, 0, errstr, errstr_size);
        if (rc)
                return rc;
        if (!(isfinite(eps) && eps > 0)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: target epsilon must be finite and "
                     "> 0, got %g",
                     eps);
                return -VEIL_EINVAL;
        }
        rc = check_rho_delta(0, delta, errstr, errstr_size);
        if (rc)
                return rc;
        /* ε falls as σ grows: bracket, then bisect geometrically. hi
         * always satisfies the target, and hi is what is returned. */
        hi = 1.0;
        while (epsilon_of(mech_rho(m, hi), delta, NULL) > eps) {
                hi *= 2;
                if (hi > 1e12) {
                        errf(errstr, errstr_size,
                             "dp_model accountant: epsilon %g at delta %g "
                             "needs a noise multiplier above 1e12",
                             eps, delta);
                        return -VEIL_EINVAL;
                }
        }
        lo = hi / 2;
        while (epsilon_of(mech_rho(m, lo), delta, NULL) <= eps) {
                hi = lo;
                lo /= 2;
                if (lo < 1e-12) {
                        *sigma = hi;
                        return 0;
                }
        }
        while (hi / lo - 1 > 1e-10) {
                double mid = sqrt(lo * hi);
                if (epsilon_of(mech_rho(m, mid), delta, NULL) <= eps)
                        hi = mid;
                else
                        lo = mid;
        }
        *sigma = hi;
        return 0;
}

/* ---------------------------------------------------------------- */
/* State                                                              */
/* ---------------------------------------------------------------- */

int veil_accountant_new(struct veil_accountant **out,
                        const struct veil_dp_mech *m, char *errstr,
                        size_t errstr_size) {
        int rc = check_mech(m, 1, errstr, errstr_size);
        *out = NULL;
        if (rc)
                return rc;
        /* Picks the fast BLAKE2b; checksums are the same without it. */
        if (sodium_init() < 0) {
                errf(errstr, errstr_size,
                     "dp_model accountant: libsodium failed to initialize");
                return -VEIL_EIO;
        }
        *out = calloc(1, sizeof(**out));
        if (!*out) {
                errf(errstr, errstr_size,
                     "dp_model accountant: out of memory");
                return -VEIL_ENOMEM;
        }
        (*out)->mech = *m;
        (*out)->draws = veil_dp_draws_per_rho(m);
        /* Never 0, which stands for the files of a veil before lineages,
         * nor 2^32-1, under which their tables' uncounted releases count,
         * nor 2^32-2, under which a copy of the file run by another
         * process counts (share.h); an id per new state, so that a spend
         * begun anew after a lost file counts beside the old one, not
         * instead of it. */
        do
                (*out)->lineage = randombytes_random();
        while (!(*out)->lineage || (*out)->lineage >= UINT32_MAX - 1);
        return 0;
}

uint32_t veil_accountant_lineage(const struct veil_accountant *acc) {
        return acc->lineage;
}

void veil_accountant_free(struct veil_accountant *acc) {
        free(acc);
}

double veil_accountant_rho(const struct veil_accountant *acc) {
        return acc->rho;
}

uint64_t veil_accountant_steps(const struct veil_accountant *acc) {
        return acc->steps;
}

uint64_t veil_accountant_version(const struct veil_accountant *acc) {
        return acc->version;
}

const struct veil_dp_mech *
veil_accountant_mech(const struct veil_accountant *acc) {
        return &acc->mech;
}

int veil_accountant_epsilon(const struct veil_accountant *acc, double delta,
                            double *eps, char *errstr, size_t errstr_size) {
        return veil_dp_epsilon_sampled(acc->rho, delta, acc->draws, eps,
                                       errstr, errstr_size);
}

double veil_accountant_draws_per_rho(const struct veil_accountant *acc) {
        return acc->draws;
}

int veil_accountant_raise_draws(struct veil_accountant *acc, double draws,
                                char *errstr, size_t errstr_size) {
        if (!(isfinite(draws) && draws >= 0)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: draws per unit of rho must be a "
                     "finite number >= 0, got %g",
                     draws);
                return -VEIL_EINVAL;
        }
        if (!(draws > acc->draws))
                return 0;
        acc->draws = draws;
        acc->version++;
        return 1;
}

static void add_rho(struct veil_accountant *acc, double rho) {
        if (rho > 0) {
                /* Round the sum up: a thousand charges must not lose
                 * a thousand half-ulps. */
                acc->rho = nextafter(acc->rho + rho, INFINITY);
        }
}

int veil_accountant_charge(struct veil_accountant *acc, double rho,
                           uint64_t steps, char *errstr, size_t errstr_size) {
        if (!(isfinite(rho) && rho >= 0)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: a charge must be finite and >= 0 "
                     "(the spend never goes down), got %g",
                     rho);
                return -VEIL_EINVAL;
        }
        add_rho(acc, rho);
        acc->steps = sat_add(acc->steps, steps);
        acc->version++;
        return 0;
}

/* Cost of the next release in units of 1/(2σ²). */
static uint64_t step_units(const struct veil_accountant *acc, uint64_t unit) {
        int same = acc->has_unit && acc->unit == unit;
        uint64_t k, p, d0, d1, u = 0;

        if (acc->mech.kind == VEIL_DP_GAUSSIAN)
                return !same || acc->session_steps < acc->mech.max_per_user;
        if (!same) /* a new tree's first leaf */
                return level_units(tree_k(&acc->mech), 0);
        /* The levels the k-th release opens, for p participations; after
         * a restore (pending) a user may join P more steps, so p grows by
         * P and every level already open is topped up to the bound for
         * the new p. */
        k = acc->unit_steps + 1;
        p = acc->pending ? sat_add(acc->classes, tree_k(&acc->mech))
                         : acc->classes;
        d0 = veil_dp_tree_depth(k - 1);
        d1 = veil_dp_tree_depth(k);
        for (uint64_t l = d0; l < d1; l++)
                u = sat_add(u, level_units(p, l));
        for (uint64_t l = 0; acc->pending && l < d0; l++)
                u = sat_add(u, level_units(p, l) -
                                       level_units(acc->classes, l));
        return u;
}

static double units_rho(const struct veil_accountant *acc, uint64_t n) {
        double s = acc->mech.sigma;
        return n ? round_up((double)n / (2.0 * s * s)) : 0.0;
}

int veil_accountant_step_cost(const struct veil_accountant *acc, uint64_t unit,
                              double *rho, char *errstr, size_t errstr_size) {
        (void)errstr;
        (void)errstr_size;
        *rho = units_rho(acc, step_units(acc, unit));
        return 0;
}

int veil_accountant_unit(const struct veil_accountant *acc, uint64_t *unit) {
        if (!acc->has_unit)
                return 0;
        *unit = acc->unit;
        return 1;
}

uint64_t veil_accountant_unit_steps(const struct veil_accountant *acc) {
        return acc->has_unit ? acc->unit_steps : 0;
}

int veil_accountant_charge_step(struct veil_accountant *acc, uint64_t unit,
                                double *charged, char *errstr,
                                size_t errstr_size) {
        double rho = units_rho(acc, step_units(acc, unit));
        (void)errstr;
        (void)errstr_size;

        if (!(acc->has_unit && acc->unit == unit)) {
                acc->has_unit = 1;
                acc->unit = unit;
                acc->unit_steps = 0;
                acc->session_steps = 0;
                acc->classes = acc->mech.kind == VEIL_DP_TREE
                                       ? tree_k(&acc->mech)
                                       : 1;
                acc->pending = 0;
        }
        if (acc->pending) {
                acc->classes = sat_add(acc->classes,
                                       acc->mech.kind == VEIL_DP_TREE
                                               ? tree_k(&acc->mech)
                                               : 1);
                acc->pending = 0;
        }
        acc->unit_steps = sat_add(acc->unit_steps, 1);
        acc->session_steps = sat_add(acc->session_steps, 1);
        add_rho(acc, rho);
        acc->steps = sat_add(acc->steps, 1);
        acc->version++;
        if (charged)
                *charged = rho;
        return 0;
}

int veil_accountant_would_exceed(const struct veil_accountant *acc,
                                 double rho_next, double eps_budget,
                                 double delta, char *errstr,
                                 size_t errstr_size) {
        double total;
        int rc = check_rho_delta(rho_next, delta, errstr, errstr_size);
        if (rc)
                return rc;
        if (!(eps_budget >= 0)) {
                errf(errstr, errstr_size,
                     "dp_model accountant: epsilon budget must be >= 0, got %g",
                     eps_budget);
                return -VEIL_EINVAL;
        }
        total = acc->rho + rho_next;
        if (rho_next > 0)
                total = nextafter(total, INFINITY);
        return epsilon_sampled(total, delta, acc->draws) > eps_budget;
}

/* ---------------------------------------------------------------- */
/* The record                                                         */
/* ---------------------------------------------------------------- */

static uint64_t dbits(double d) {
        uint64_t v;
        memcpy(&v, &d, sizeof(v));
        return v;
}

static double bitsd(uint64_t v) {
        double d;
        memcpy(&d, &v, sizeof(d));
        return d;
}

void veil_accountant_encode(const struct veil_accountant *acc,
                            unsigned char buf[VEIL_ACCOUNTANT_RECORD_SIZE]) {
        memset(buf, 0, VEIL_ACCOUNTANT_RECORD_SIZE);
        memcpy(buf, RECORD_MAGIC, 8);
        veil_le_put32(buf + 8, RECORD_FORMAT);
        veil_le_put32(buf + 12, (uint32_t)acc->mech.kind);
        veil_le_put64(buf + 16, acc->version);
        veil_le_put64(buf + 24, dbits(acc->rho));
        veil_le_put64(buf + 32, acc->steps);
        veil_le_put64(buf + 40, dbits(acc->mech.sigma));
        veil_le_put64(buf + 48, acc->mech.max_per_user);
        veil_le_put64(buf + 56, acc->mech.tree_steps);
        veil_le_put64(buf + 64, acc->mech.units);
        veil_le_put64(buf + 72, acc->unit);
        veil_le_put64(buf + 80, acc->unit_steps);
        veil_le_put64(buf + 88, acc->classes);
        veil_le_put32(buf + 96, (acc->has_unit ? FLAG_HAS_UNIT : 0) |
                                (acc->pending ? FLAG_PENDING : 0));
        veil_le_put32(buf + 100, acc->lineage);
        veil_le_put64(buf + 104, dbits(acc->draws));
        crypto_generichash(buf + RECORD_BODY(RECORD_FORMAT),
                           VEIL_ACCOUNTANT_RECORD_SIZE -
                                   RECORD_BODY(RECORD_FORMAT),
                           buf, RECORD_BODY(RECORD_FORMAT), NULL, 0);
}

struct record {
        uint32_t kind, flags, lineage;
        uint64_t version, steps, unit, unit_steps, classes;
        double rho, draws;
};

static int decode(const unsigned char *p, size_t len, struct record *r,
                  const char *what, char *errstr, size_t errstr_size) {
        unsigned char sum[VEIL_ACCOUNTANT_RECORD_SIZE];

        if (len != VEIL_ACCOUNTANT_RECORD_SIZE) {
                errf(errstr, errstr_size,
                     "dp_model accountant state %s: %zu bytes, a record has "
                     "%d; refusing it (truncated or not an accountant "
                     "record)",
                     what, len, VEIL_ACCOUNTANT_RECORD_SIZE);
                return -VEIL_EDECODE;
        }
        if (memcmp(p, RECORD_MAGIC, 8) != 0) {
                errf(errstr, errstr_size,
                     "dp_model accountant state %s: no VEILACCT header; "
                     "refusing it (not an accountant record)",
                     what);
                return -VEIL_EDECODE;
        }
        /* The format says how much the checksum covers; a corrupt format
         * field makes the checksum fail like any other corruption. One
         * above this build's is named before the checksum, which a later
         * format may lay out otherwise: a downgrade is told what it is
         * (an older veil said only "checksum mismatch"). */
        uint32_t format = veil_le_get32(p + 8);
        if (format > RECORD_FORMAT && format < 256) {
                errf(errstr, errstr_size,
                     "dp_model accountant state %s: record format %u, this "
                     "build reads formats 1 to %u; refusing it. It was "
                     "written by a newer veil (run that version: this one "
                     "cannot count its spend), or it is corrupt. Never "
                     "reset it",
                     what, format, RECORD_FORMAT);
                return -VEIL_EDECODE;
        }
        size_t body = RECORD_BODY(format),
               sum_len = VEIL_ACCOUNTANT_RECORD_SIZE - body;
        crypto_generichash(sum, sum_len, p, body, NULL, 0);
        if (sodium_memcmp(sum, p + body, sum_len) != 0) {
                errf(errstr, errstr_size,
                     "dp_model accountant state %s: checksum mismatch, the "
                     "record is corrupt; refusing it. The spend it held "
                     "cannot be trusted: restore the record from the "
                     "checkpoint topic or a backup, never reset it",
                     what);
                return -VEIL_EDECODE;
        }
        if (format < 1 || format > RECORD_FORMAT) {
                errf(errstr, errstr_size,
                     "dp_model accountant state %s: record format %u, this "
                     "build reads formats 1 to %u",
                     what, format, RECORD_FORMAT);
                return -VEIL_EDECODE;
        }
        r->kind = veil_le_get32(p + 12);
        r->version = veil_le_get64(p + 16);
        r->rho = bitsd(veil_le_get64(p + 24));
        r->steps = veil_le_get64(p + 32);
        r->unit = veil_le_get64(p + 72);
        r->unit_steps = veil_le_get64(p + 80);
        r->classes = veil_le_get64(p + 88);
        r->flags = veil_le_get32(p + 96);
        r->lineage = veil_le_get32(p + 100);
        r->draws = format >= 3 ? bitsd(veil_le_get64(p + 104)) : 0;
        if ((r->kind != VEIL_DP_GAUSSIAN && r->kind != VEIL_DP_TREE) ||
            !(isfinite(r->rho) && r->rho >= 0) ||
            !(isfinite(r->draws) && r->draws >= 0) ||
            (r->flags & ~(FLAG_HAS_UNIT | FLAG_PENDING)) ||
            (format == 1 && r->lineage != 0)) {
                errf(errstr, errstr_size,
                     "dp_model accountant state %s: checksum matches but "
                     "the fields are invalid (mechanism kind %u, rho %g); "
                     "refusing it",
                     what, r->kind, r->rho);
                return -VEIL_EDECODE;
        }
        return 0;
}

int veil_accountant_restore(struct veil_accountant *acc, const void *data,
                            size_t len, char *errstr, size_t errstr_size) {
        struct record r;
        int rc = decode(data, len, &r, "record", errstr, errstr_size);
        if (rc)
                return rc;
        if (r.rho > acc->rho)
                acc->rho = r.rho;
        /* The larger rate counts the whole spend: an upper bound whichever
         * configuration charged which part. */
        if (r.draws > acc->draws)
                acc->draws = r.draws;
        if (r.steps > acc->steps)
                acc->steps = r.steps;
        /* Unit bookkeeping only carries over within one kind of
         * mechanism; a unit count can only make later charges larger. */
        if (r.kind == (uint32_t)acc->mech.kind && (r.flags & FLAG_HAS_UNIT)) {
                if (acc->has_unit && acc->unit == r.unit) {
                        if (r.unit_steps > acc->unit_steps)
                                acc->unit_steps = r.unit_steps;
                        if (r.classes > acc->classes)
                                acc->classes = r.classes;
                } else if (!acc->has_unit || r.version > acc->version) {
                        acc->has_unit = 1;
                        acc->unit = r.unit;
                        acc->unit_steps = r.unit_steps;
                        acc->classes = r.classes ? r.classes : 1;
                }
        }
        /* The per-user bounds the plugin restored may predate this
         * record: whoever already contributed to the current unit may
         * contribute once more (see step_cost). */
        acc->session_steps = 0;
        acc->pending = acc->has_unit && acc->mech.kind == VEIL_DP_TREE;
        if (r.version > acc->version)
                acc->version = r.version;
        acc->version++;
        return 0;
}

/* ---------------------------------------------------------------- */
/* Files                                                              */
/* ---------------------------------------------------------------- */

static int write_all(int fd, const unsigned char *p, size_t n) {
        while (n) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

static int fsync_dir_of(const char *path) {
        const char *slash = strrchr(path, '/');
        char *dir;
        int fd, rc;

        if (!slash)
                dir = strdup(".");
        else if (slash == path)
                dir = strdup("/");
        else
                dir = strndup(path, (size_t)(slash - path));
        if (!dir)
                return -1;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(dir);
        if (fd < 0)
                return -1;
        rc = fsync(fd);
        if (rc < 0) {
                int e = errno;
                close(fd);
                errno = e;
                return rc;
        }
        return close(fd);
}

/* The state file: two slots, each a record at the start of its own 4 KiB
 * block (so that writing one never rewrites the sector of the other), the
 * rest zero. A save overwrites the slot with the older record and syncs
 * it: one fdatasync, and the newest durable record is never the one being
 * written. The file is created (or a one-record file of an older veil
 * replaced) by the atomic path: a temporary file, fsync, rename, fsync of
 * the directory. */
#define SLOT 4096
#define FILE_SIZE (2 * SLOT)

static int all_zero(const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return 0;
        return 1;
}

int veil_dp_file_replace(const char *path, const void *data, size_t len,
                         char *errstr, size_t errstr_size) {
        size_t plen = strlen(path);
        char *tmp = malloc(plen + sizeof(".XXXXXX"));
        const char *step = "create a temporary file beside";
        int fd = -1;

        if (!tmp) {
                errf(errstr, errstr_size,
                     "dp_model accountant: out of memory saving %s", path);
                return -VEIL_ENOMEM;
        }
        memcpy(tmp, path, plen);
        memcpy(tmp + plen, ".XXXXXX", sizeof(".XXXXXX"));
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                goto fail;
        step = "write";
        if (write_all(fd, data, len) < 0)
                goto fail_fd;
        step = "fsync";
        if (fsync(fd) < 0)
                goto fail_fd;
        step = "close";
        if (close(fd) < 0) {
                fd = -1;
                goto fail_tmp;
        }
        step = "rename a temporary file over";
        if (rename(tmp, path) < 0)
                goto fail_tmp;
        free(tmp);
        /* Without this the rename may not survive a power cut, and the
         * release that follows would outlive the record of its cost. */
        if (fsync_dir_of(path) < 0) {
                errf(errstr, errstr_size,
                     "dp_model accountant: cannot fsync the directory of %s: "
                     "%s; do not release until a save succeeds",
                     path, strerror(errno));
                return -VEIL_EIO;
        }
        return 0;

fail_fd:
        {
                int e = errno;
                close(fd);
                errno = e;
        }
fail_tmp:
        {
                int e = errno;
                unlink(tmp);
                errno = e;
        }
fail:
        errf(errstr, errstr_size,
             "dp_model accountant: cannot %s %s: %s; do not release until a "
             "save succeeds",
             step, path, strerror(errno));
        free(tmp);
        return -VEIL_EIO;
}

int veil_dp_file_read(const char *path, size_t max, void **data, size_t *len,
                      char *errstr, size_t errstr_size) {
        struct stat st;
        unsigned char *buf = NULL;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        *data = NULL;
        *len = 0;
        if (fd < 0 && errno == ENOENT)
                return -VEIL_ENOENT;
        if (fd < 0 || fstat(fd, &st) < 0)
                goto fail;
        if (st.st_size < 0 || (uint64_t)st.st_size > max) {
                close(fd);
                errf(errstr, errstr_size,
                     "dp_model accountant: %s is %lld bytes, more than the "
                     "%zu such a file can hold",
                     path, (long long)st.st_size, max);
                return -VEIL_EDECODE;
        }
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        if (!buf) {
                close(fd);
                errf(errstr, errstr_size,
                     "dp_model accountant: out of memory reading %s", path);
                return -VEIL_ENOMEM;
        }
        for (size_t got = 0; got < (size_t)st.st_size;) {
                ssize_t r = pread(fd, buf + got, (size_t)st.st_size - got,
                                  (off_t)got);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        if (r == 0)
                                errno = EIO; /* shorter than it said */
                        free(buf);
                        goto fail;
                }
                got += (size_t)r;
        }
        close(fd);
        *data = buf;
        *len = (size_t)st.st_size;
        return 0;
fail:
        {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                errf(errstr, errstr_size,
                     "dp_model accountant: cannot read %s: %s", path,
                     strerror(e));
        }
        return -VEIL_EIO;
}

/* Writes the whole two-slot file anew, rec in slot 0. */
static int create_file(const unsigned char *rec, const char *path,
                       char *errstr, size_t errstr_size) {
        unsigned char *file = calloc(1, FILE_SIZE);
        if (!file) {
                errf(errstr, errstr_size,
                     "dp_model accountant: out of memory saving %s", path);
                return -VEIL_ENOMEM;
        }
        memcpy(file, rec, VEIL_ACCOUNTANT_RECORD_SIZE);
        int rc = veil_dp_file_replace(path, file, FILE_SIZE, errstr,
                                      errstr_size);
        free(file);
        return rc;
}

/* The version in a slot's record, 0 when the slot is empty or not a
 * record (the one to overwrite). */
static uint64_t slot_version(const unsigned char *p) {
        struct record r;
        if (all_zero(p, VEIL_ACCOUNTANT_RECORD_SIZE) ||
            decode(p, VEIL_ACCOUNTANT_RECORD_SIZE, &r, "", NULL, 0))
                return 0;
        return r.version + 1;
}

int veil_accountant_save(const struct veil_accountant *acc, const char *path,
                         char *errstr, size_t errstr_size) {
        unsigned char rec[VEIL_ACCOUNTANT_RECORD_SIZE];
        unsigned char s0[VEIL_ACCOUNTANT_RECORD_SIZE],
                s1[VEIL_ACCOUNTANT_RECORD_SIZE];
        struct stat st;

        veil_accountant_encode(acc, rec);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_size != FILE_SIZE ||
            pread(fd, s0, sizeof(s0), 0) != (ssize_t)sizeof(s0) ||
            pread(fd, s1, sizeof(s1), SLOT) != (ssize_t)sizeof(s1)) {
                if (fd >= 0)
                        close(fd);
                return create_file(rec, path, errstr, errstr_size);
        }
        off_t at = slot_version(s0) <= slot_version(s1) ? 0 : SLOT;
        ssize_t w;
        do
                w = pwrite(fd, rec, sizeof(rec), at);
        while (w < 0 && errno == EINTR);
        if (w != (ssize_t)sizeof(rec) || fdatasync(fd) < 0) {
                int e = w < 0 || w == (ssize_t)sizeof(rec) ? errno : EIO;
                close(fd);
                errf(errstr, errstr_size,
                     "dp_model accountant: cannot write and sync %s: %s; do "
                     "not release until a save succeeds",
                     path, strerror(e));
                return -VEIL_EIO;
        }
        if (close(fd) < 0) {
                errf(errstr, errstr_size,
                     "dp_model accountant: cannot close %s: %s; do not "
                     "release until a save succeeds",
                     path, strerror(errno));
                return -VEIL_EIO;
        }
        return 0;
}

int veil_accountant_load(struct veil_accountant *acc, const char *path,
                         char *errstr, size_t errstr_size) {
        unsigned char *buf = malloc(FILE_SIZE + 1);
        size_t got = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct record r;
        int rc = 0;

        if (fd < 0) {
                int e = errno;
                free(buf);
                errf(errstr, errstr_size,
                     "dp_model accountant: cannot open %s: %s", path,
                     strerror(e));
                return e == ENOENT ? -VEIL_ENOENT : -VEIL_EIO;
        }
        if (!buf) {
                close(fd);
                return -VEIL_ENOMEM;
        }
        /* Read one byte more than a file so a longer one is caught. */
        while (got < FILE_SIZE + 1) {
                ssize_t n = read(fd, buf + got, FILE_SIZE + 1 - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        close(fd);
                        free(buf);
                        errf(errstr, errstr_size,
                             "dp_model accountant: cannot read %s: %s", path,
                             strerror(e));
                        return -VEIL_EIO;
                }
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        close(fd);
        if (got != FILE_SIZE) {
                /* A one-record file (an older veil's), or not a state. */
                rc = decode(buf, got, &r, path, errstr, errstr_size);
                if (!rc)
                        rc = veil_accountant_restore(acc, buf, got, errstr,
                                                     errstr_size);
                if (!rc)
                        acc->lineage = r.lineage;
                free(buf);
                return rc;
        }
        /* Both slots are checked before either is used: a damaged one is
         * refused, not skipped, since it may hold the newest spend (a
         * 128-byte write within one sector does not tear). */
        int n_rec = 0;
        for (int i = 0; i < 2 && !rc; i++) {
                const unsigned char *p = buf + (size_t)i * SLOT;
                if (!all_zero(p + VEIL_ACCOUNTANT_RECORD_SIZE,
                              SLOT - VEIL_ACCOUNTANT_RECORD_SIZE)) {
                        errf(errstr, errstr_size,
                             "dp_model accountant state %s: slot %d has bytes "
                             "past its record; refusing it (not an "
                             "accountant state file)",
                             path, i);
                        rc = -VEIL_EDECODE;
                } else if (!all_zero(p, VEIL_ACCOUNTANT_RECORD_SIZE)) {
                        rc = decode(p, VEIL_ACCOUNTANT_RECORD_SIZE, &r, path,
                                    errstr, errstr_size);
                        n_rec++;
                }
        }
        if (!rc && !n_rec) {
                errf(errstr, errstr_size,
                     "dp_model accountant state %s: both slots are empty; "
                     "refusing it (not an accountant state file)",
                     path);
                rc = -VEIL_EDECODE;
        }
        /* Restoring both keeps the larger spend (restore never lowers).
         * The newer slot goes first: restore takes a record's unit only
         * when it is newer than the state it merges into, and each
         * restore makes that state one version newer, so an older slot
         * restored first would keep its unit against a newer one only one
         * version above it. */
        int first = slot_version(buf + SLOT) > slot_version(buf) ? 1 : 0;
        /* The file's lineage is its newest record's (both slots have it:
         * saves write the lineage loaded). */
        if (!rc && !decode(buf + (size_t)first * SLOT,
                           VEIL_ACCOUNTANT_RECORD_SIZE, &r, path, NULL, 0))
                acc->lineage = r.lineage;
        for (int j = 0; j < 2 && !rc; j++) {
                const unsigned char *p = buf + (size_t)(j ? !first : first) *
                                                       SLOT;
                if (!all_zero(p, VEIL_ACCOUNTANT_RECORD_SIZE))
                        rc = veil_accountant_restore(
                                acc, p, VEIL_ACCOUNTANT_RECORD_SIZE, errstr,
                                errstr_size);
        }
        free(buf);
        return rc;
}
