/*
 * test_accountant.c — the dp_model privacy accountant against the reference
 * values in tests/conformance/dp-accountant.md (read at run time, so the
 * file is the single source of truth) and against an independent analytic
 * Gaussian computed here.
 */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "accountant.h"
#include "veil/veil.h"

/* cmocka 1.1.5 (Debian 12) has no assert_double_equal. */
#define assert_near(a, b, tol) near_((a), (b), (tol), #a, __FILE__, __LINE__)

static void near_(double a, double b, double tol, const char *what,
                  const char *file, int line) {
        if (!(fabs(a - b) <= tol))
                fail_msg("%s:%d: %s = %.17g, expected %.17g within %g", file,
                         line, what, a, b, tol);
}

/* rc must be 0; otherwise the message the call left in err is shown. */
#define assert_ok(call, err) ok_((call), (err), #call, __FILE__, __LINE__)

static void ok_(int rc, const char *err, const char *what, const char *file,
                int line) {
        if (rc != 0)
                fail_msg("%s:%d: %s returned %d: %s", file, line, what, rc,
                         err);
}

#ifndef VEIL_CONFORMANCE_DIR
#define VEIL_CONFORMANCE_DIR "tests/conformance"
#endif

/* ---------------------------------------------------------------- */
/* The conformance file                                               */
/* ---------------------------------------------------------------- */

struct conf {
        double g_delta;
        struct {
                double sigma, exact, rdp, classic;
        } g[16];
        int ng;
        double ten_sigma, ten_exact, ten_rdp;
        int have_ten;
        struct {
                double rho, delta, rdp, exact, loose;
        } z[16];
        int nz;
        double t_delta;
        struct {
                double sigma, steps, restarts, rho, eps;
        } t[16];
        int nt;
};

/* Numeric cells of a markdown table row; 0 when the row is not numeric. */
static int cells(const char *line, double *v, int max) {
        int n = 0;
        const char *p = line;
        if (*p != '|')
                return 0;
        while (n < max) {
                char *end;
                const char *q = p + 1;
                while (*q == ' ')
                        q++;
                if (!*q || *q == '\n')
                        break;
                v[n] = strtod(q, &end);
                if (end == q)
                        return n;
                n++;
                p = strchr(q, '|');
                if (!p)
                        break;
        }
        return n;
}

static double after(const char *line, const char *key) {
        const char *p = strstr(line, key);
        return p ? strtod(p + strlen(key), NULL) : NAN;
}

static void conf_load(struct conf *c) {
        const char *dir = getenv("VEIL_CONFORMANCE_DIR");
        char path[1024], line[1024];
        int section = 0;
        FILE *f;

        memset(c, 0, sizeof(*c));
        snprintf(path, sizeof(path), "%s/dp-accountant.md",
                 dir ? dir : VEIL_CONFORMANCE_DIR);
        f = fopen(path, "r");
        if (!f)
                fail_msg("cannot open %s (set VEIL_CONFORMANCE_DIR)", path);
        while (fgets(line, sizeof(line), f)) {
                double v[8];
                int n;
                if (!strncmp(line, "## ", 3)) {
                        section = strstr(line, "One Gaussian")  ? 1
                                  : strstr(line, "zCDP")        ? 2
                                  : strstr(line, "DP-FTRL")     ? 3
                                                                : 0;
                        if (section == 1)
                                c->g_delta = after(line, "δ = ");
                        continue;
                }
                if (section == 1 && strstr(line, "Ten releases")) {
                        c->ten_sigma = after(line, "σ = ");
                        c->ten_exact = after(line, "exact ");
                        c->ten_rdp = after(line, "RDP ");
                        c->have_ten = 1;
                        continue;
                }
                if (section == 3 && strstr(line, "δ = "))
                        c->t_delta = after(line, "δ = ");
                n = cells(line, v, 8);
                if (section == 1 && n == 4 && c->ng < 16) {
                        c->g[c->ng].sigma = v[0];
                        c->g[c->ng].exact = v[1];
                        c->g[c->ng].rdp = v[2];
                        c->g[c->ng].classic = v[3];
                        c->ng++;
                } else if (section == 2 && n == 5 && c->nz < 16) {
                        c->z[c->nz].rho = v[0];
                        c->z[c->nz].delta = v[1];
                        c->z[c->nz].rdp = v[2];
                        c->z[c->nz].exact = v[3];
                        c->z[c->nz].loose = v[4];
                        c->nz++;
                } else if (section == 3 && n == 5 && c->nt < 16) {
                        c->t[c->nt].sigma = v[0];
                        c->t[c->nt].steps = v[1];
                        c->t[c->nt].restarts = v[2];
                        c->t[c->nt].rho = v[3];
                        c->t[c->nt].eps = v[4];
                        c->nt++;
                }
        }
        fclose(f);
        assert_true(c->ng >= 3);
        assert_true(c->nz >= 1);
        assert_true(c->nt >= 1);
        assert_true(c->have_ten);
        assert_true(c->g_delta > 0 && c->g_delta < 1);
        assert_true(c->t_delta > 0 && c->t_delta < 1);
}

/* ---------------------------------------------------------------- */
/* An independent exact reference: the analytic Gaussian (Balle & Wang
 * 2018). A composition of Gaussians of total ρ is one Gaussian with
 * μ = √(2ρ): δ(ε) = Φ(μ/2 - ε/μ) - e^ε Φ(-μ/2 - ε/μ).                   */
/* ---------------------------------------------------------------- */

static double phi(double x) {
        return 0.5 * erfc(-x / sqrt(2.0));
}

static double exact_delta(double mu, double eps) {
        return phi(mu / 2 - eps / mu) - exp(eps) * phi(-mu / 2 - eps / mu);
}

static double exact_eps(double rho, double delta) {
        double mu = sqrt(2 * rho), lo = 0, hi = 1;
        if (exact_delta(mu, 0) <= delta)
                return 0;
        while (exact_delta(mu, hi) > delta)
                hi *= 2;
        for (int i = 0; i < 200; i++) {
                double mid = (lo + hi) / 2;
                if (exact_delta(mu, mid) > delta)
                        lo = mid;
                else
                        hi = mid;
        }
        return hi;
}

static double eps_of(double rho, double delta) {
        double eps = -1;
        char err[256];
        assert_int_equal(veil_dp_epsilon(rho, delta, &eps, NULL, err,
                                         sizeof(err)),
                         0);
        return eps;
}

static struct veil_dp_mech gauss(double sigma, uint64_t m, uint64_t units) {
        struct veil_dp_mech g = {VEIL_DP_GAUSSIAN, sigma, m, 0, units, 0};
        return g;
}

static struct veil_dp_mech tree(double sigma, uint64_t t, uint64_t units) {
        struct veil_dp_mech g = {VEIL_DP_TREE, sigma, 0, t, units, 0};
        return g;
}

/* ---------------------------------------------------------------- */
/* Conformance                                                        */
/* ---------------------------------------------------------------- */

static void test_reference_reproduces_file(void **state) {
        struct conf c;
        (void)state;
        conf_load(&c);
        for (int i = 0; i < c.ng; i++) {
                double rho = 1 / (2 * c.g[i].sigma * c.g[i].sigma);
                assert_near(exact_eps(rho, c.g_delta), c.g[i].exact,
                                    2e-6);
        }
        assert_near(exact_eps(c.z[0].rho, c.z[0].delta), c.z[0].exact,
                            2e-4);
        assert_near(
                exact_eps(10 / (2 * c.ten_sigma * c.ten_sigma), c.g_delta),
                c.ten_exact, 2e-6);
}

static void test_conformance_gaussian(void **state) {
        struct conf c;
        char err[256];
        (void)state;
        conf_load(&c);
        for (int i = 0; i < c.ng; i++) {
                struct veil_dp_mech m = gauss(c.g[i].sigma, 1, 1);
                double rho, eps, alpha;
                assert_int_equal(veil_dp_rho(&m, &rho, err, sizeof(err)), 0);
                assert_int_equal(veil_dp_epsilon(rho, c.g_delta, &eps, &alpha,
                                                 err, sizeof(err)),
                                 0);
                print_message("sigma %.1f: eps %.6f (exact %.6f, RDP grid "
                              "%.6f) at alpha %.3f\n",
                              c.g[i].sigma, eps, c.g[i].exact, c.g[i].rdp,
                              alpha);
                assert_true(eps >= c.g[i].exact);
                assert_true(eps <= 1.01 * c.g[i].rdp);
                /* A continuous α does at least as well as a grid. */
                assert_true(eps <= c.g[i].rdp + 1e-6);
                assert_true(eps < c.g[i].classic);
        }
}

static void test_conformance_ten_releases(void **state) {
        struct conf c;
        struct veil_accountant *acc;
        struct veil_dp_mech m;
        char err[256];
        double eps;
        (void)state;
        conf_load(&c);
        /* Ten releases in one window, each user in all ten. */
        m = gauss(c.ten_sigma, 10, 1);
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)), 0);
        for (int i = 0; i < 10; i++)
                assert_int_equal(veil_accountant_charge_step(acc, 1, NULL, err,
                                                             sizeof(err)),
                                 0);
        assert_int_equal(veil_accountant_steps(acc), 10);
        assert_true(veil_accountant_rho(acc) >= 10 / (2 * 25.0));
        assert_near(veil_accountant_rho(acc), 0.2, 1e-12);
        assert_int_equal(veil_accountant_epsilon(acc, c.g_delta, &eps, err,
                                                 sizeof(err)),
                         0);
        print_message("ten releases: eps %.6f (exact %.6f, RDP %.6f)\n", eps,
                      c.ten_exact, c.ten_rdp);
        assert_true(eps >= c.ten_exact);
        assert_true(eps <= 1.01 * c.ten_rdp);
        veil_accountant_free(acc);
}

static void test_conformance_zcdp(void **state) {
        struct conf c;
        (void)state;
        conf_load(&c);
        for (int i = 0; i < c.nz; i++) {
                double eps = eps_of(c.z[i].rho, c.z[i].delta);
                print_message("rho %.2f delta %g: eps %.4f (RDP %.4f, exact "
                              "%.4f)\n",
                              c.z[i].rho, c.z[i].delta, eps, c.z[i].rdp,
                              c.z[i].exact);
                assert_true(eps >= c.z[i].exact);
                assert_true(eps <= 1.01 * c.z[i].rdp);
                assert_true(eps <= c.z[i].rdp + 1e-4);
                assert_true(eps < c.z[i].loose);
        }
}

static void test_conformance_tree(void **state) {
        struct conf c;
        char err[256];
        (void)state;
        conf_load(&c);
        for (int i = 0; i < c.nt; i++) {
                struct veil_dp_mech m =
                        tree(c.t[i].sigma, (uint64_t)c.t[i].steps,
                             (uint64_t)c.t[i].restarts);
                struct veil_accountant *acc;
                double rho, eps;

                assert_int_equal(veil_dp_rho(&m, &rho, err, sizeof(err)), 0);
                assert_true(rho >= c.t[i].rho);
                assert_near(rho, c.t[i].rho, 1e-12);
                eps = eps_of(rho, c.t_delta);
                print_message("tree: rho %.6f eps %.4f (RDP %.4f, exact "
                              "%.4f)\n",
                              rho, eps, c.t[i].eps,
                              exact_eps(rho, c.t_delta));
                assert_true(eps >= exact_eps(c.t[i].rho, c.t_delta));
                assert_true(eps <= 1.01 * c.t[i].eps);
                assert_true(eps <= c.t[i].eps + 1e-4);

                /* The same spend, release by release. */
                assert_int_equal(veil_accountant_new(&acc, &m, err,
                                                     sizeof(err)),
                                 0);
                for (uint64_t tr = 0; tr < m.units; tr++)
                        for (uint64_t s = 0; s < m.tree_steps; s++)
                                assert_int_equal(veil_accountant_charge_step(
                                                         acc, tr, NULL, err,
                                                         sizeof(err)),
                                                 0);
                assert_true(veil_accountant_rho(acc) >= c.t[i].rho);
                assert_near(veil_accountant_rho(acc), c.t[i].rho,
                                    1e-9);
                veil_accountant_free(acc);
        }
}

/* ---------------------------------------------------------------- */
/* The conversion                                                     */
/* ---------------------------------------------------------------- */

static void test_never_below_exact(void **state) {
        static const double deltas[] = {1e-3, 1e-5, 1e-10};
        (void)state;
        for (size_t d = 0; d < sizeof(deltas) / sizeof(deltas[0]); d++) {
                for (double lr = -9; lr <= 3; lr += 0.25) {
                        double rho = exp(lr);
                        double ours = eps_of(rho, deltas[d]);
                        double ex = exact_eps(rho, deltas[d]);
                        if (ours < ex - 1e-9 * (1 + ex))
                                fail_msg("rho %g delta %g: eps %.12g below "
                                         "exact %.12g",
                                         rho, deltas[d], ours, ex);
                }
        }
}

/* The ε reported is the formula at the α reported, rounded up: check it
 * against the formula evaluated in long double. */
static void test_rounds_up(void **state) {
        (void)state;
        for (double lr = -12; lr <= 4; lr += 0.5) {
                double rho = exp(lr), delta = 1e-6, eps, alpha;
                long double a, f;
                char err[256];
                assert_int_equal(veil_dp_epsilon(rho, delta, &eps, &alpha, err,
                                                 sizeof(err)),
                                 0);
                a = alpha;
                f = (long double)rho * a + logl((a - 1) / a) -
                    (logl(delta) + logl(a)) / (a - 1);
                assert_true(alpha > 1);
                if (f > 0)
                        assert_true((long double)eps >= f);
                /* And not wastefully: within 1e-9 relative. */
                assert_true((long double)eps <= f + 1e-9L * (1 + fabsl(f)));
        }
}

/* Printed bounds: up never reads below x, down never above, and each is
 * the nearest such decimal of its digits. */
static void test_format_directions(void **state) {
        (void)state;
        char b[64];
        veil_format_up(b, sizeof(b), 0.646126, 4);
        assert_string_equal(b, "0.6462");
        veil_format_down(b, sizeof(b), 0.646126, 4);
        assert_string_equal(b, "0.6461");
        veil_format_down(b, sizeof(b), 2.60399, 4);
        assert_string_equal(b, "2.603");
        veil_format_down(b, sizeof(b), 0.99999, 4); /* not "1" */
        assert_string_equal(b, "0.9999");
        veil_format_up(b, sizeof(b), 0.99999, 4);
        assert_string_equal(b, "1");
        veil_format_down(b, sizeof(b), 2.5, 6); /* exact stays */
        assert_string_equal(b, "2.5");
        uint64_t r = 88172645463325252ull;
        for (int i = 0; i < 100000; i++) {
                r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                double x = ldexp((double)(r >> 11), -53) *
                           pow(10, (double)(int)(r % 13) - 6);
                int d = 1 + (int)(r % 15);
                if (!(x > 0))
                        continue;
                char up[64], dn[64];
                veil_format_up(up, sizeof(up), x, d);
                veil_format_down(dn, sizeof(dn), x, d);
                double u = strtod(up, NULL), w = strtod(dn, NULL);
                if (!(w <= x && x <= u))
                        fail_msg("%.17g at %d digits: %s .. %s", x, d, dn,
                                 up);
                /* At most one unit of the last digit apart. */
                double unit = pow(10, floor(log10(x)) - (d - 1));
                if (!(u - w <= unit + 8 * DBL_EPSILON * x)) /* u - w rounds */
                        fail_msg("%.17g at %d digits: %s .. %s", x, d, dn,
                                 up);
        }
}

static void test_epsilon_edges(void **state) {
        double eps, e1, e2;
        char err[256];
        (void)state;
        assert_int_equal(veil_dp_epsilon(0, 1e-5, &eps, NULL, err, sizeof(err)),
                         0);
        assert_true(eps == 0);
        /* Monotone in ρ and in δ. */
        for (double rho = 1e-4; rho < 100; rho *= 1.7) {
                e1 = eps_of(rho, 1e-5);
                e2 = eps_of(rho * 1.01, 1e-5);
                assert_true(e2 >= e1);
                assert_true(eps_of(rho, 1e-7) >= e1);
        }
        err[0] = 0;
        assert_int_equal(veil_dp_epsilon(1, 0, &eps, NULL, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "delta"));
        assert_int_equal(veil_dp_epsilon(1, 1, &eps, NULL, err, sizeof(err)),
                         -VEIL_EINVAL);
        err[0] = 0;
        assert_int_equal(veil_dp_epsilon(-1, 1e-5, &eps, NULL, err,
                                         sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "rho"));
        assert_int_equal(veil_dp_epsilon(NAN, 1e-5, &eps, NULL, err,
                                         sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_dp_epsilon(INFINITY, 1e-5, &eps, NULL, err,
                                         sizeof(err)),
                         -VEIL_EINVAL);
}

static void test_tree_depth(void **state) {
        (void)state;
        assert_int_equal(veil_dp_tree_depth(0), 0);
        assert_int_equal(veil_dp_tree_depth(1), 1);
        assert_int_equal(veil_dp_tree_depth(2), 2);
        assert_int_equal(veil_dp_tree_depth(3), 2);
        assert_int_equal(veil_dp_tree_depth(4), 3);
        assert_int_equal(veil_dp_tree_depth(1000), 10);
        assert_int_equal(veil_dp_tree_depth(1023), 10);
        assert_int_equal(veil_dp_tree_depth(1024), 11);
        for (uint64_t t = 1; t < 5000; t++)
                assert_int_equal(veil_dp_tree_depth(t),
                                 (uint64_t)ceil(log2((double)t + 1)));
}

static void test_noise_for_epsilon(void **state) {
        struct conf c;
        static const double targets[] = {0.1, 0.5, 1, 3, 8};
        static const double deltas[] = {1e-5, 1e-9};
        char err[256];
        (void)state;
        conf_load(&c);
        for (size_t i = 0; i < 5; i++) {
                for (size_t d = 0; d < 2; d++) {
                        struct veil_dp_mech ms[3] = {gauss(0, 1, 1),
                                                     gauss(0, 4, 100),
                                                     tree(0, 1000, 10)};
                        for (int k = 0; k < 3; k++) {
                                double sigma, rho, eps;
                                assert_int_equal(
                                        veil_dp_noise_for_epsilon(
                                                &ms[k], targets[i], deltas[d],
                                                &sigma, err, sizeof(err)),
                                        0);
                                ms[k].sigma = sigma;
                                assert_int_equal(veil_dp_rho(&ms[k], &rho, err,
                                                             sizeof(err)),
                                                 0);
                                eps = eps_of(rho, deltas[d]);
                                assert_true(eps <= targets[i]);
                                /* Tight: a little less noise overspends. */
                                ms[k].sigma = sigma * (1 - 1e-6);
                                assert_int_equal(veil_dp_rho(&ms[k], &rho, err,
                                                             sizeof(err)),
                                                 0);
                                assert_true(eps_of(rho, deltas[d]) >
                                            targets[i]);
                        }
                }
        }
        /* Inverse of the conformance rows: the RDP ε gives back σ. */
        for (int i = 0; i < c.ng; i++) {
                struct veil_dp_mech m = gauss(0, 1, 1);
                double sigma;
                assert_int_equal(veil_dp_noise_for_epsilon(&m, c.g[i].rdp,
                                                           c.g_delta, &sigma,
                                                           err, sizeof(err)),
                                 0);
                assert_near(sigma / c.g[i].sigma, 1.0, 1e-3);
        }
        {
                struct veil_dp_mech m = gauss(0, 1, 1);
                double sigma;
                err[0] = 0;
                assert_int_equal(veil_dp_noise_for_epsilon(&m, 0, 1e-5, &sigma,
                                                           err, sizeof(err)),
                                 -VEIL_EINVAL);
                assert_non_null(strstr(err, "epsilon"));
                m.max_per_user = 0;
                err[0] = 0;
                assert_int_equal(veil_dp_noise_for_epsilon(&m, 1, 1e-5, &sigma,
                                                           err, sizeof(err)),
                                 -VEIL_EINVAL);
                assert_non_null(strstr(err, "max_per_user"));
        }
}

/* ---------------------------------------------------------------- */
/* State                                                              */
/* ---------------------------------------------------------------- */

static void test_new_refuses_bad_mechanisms(void **state) {
        struct veil_accountant *acc = (void *)1;
        struct veil_dp_mech m;
        char err[256];
        (void)state;
        m = gauss(0, 1, 1);
        err[0] = 0;
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_null(acc);
        assert_non_null(strstr(err, "sigma"));
        m = gauss(NAN, 1, 1);
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)),
                         -VEIL_EINVAL);
        m = tree(1, 0, 1);
        err[0] = 0;
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "tree_steps"));
        m = gauss(1, 1, 0);
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)),
                         -VEIL_EINVAL);
        m.kind = 7;
        m.units = 1;
        err[0] = 0;
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "kind"));
}

static void test_charge_monotone(void **state) {
        struct veil_dp_mech m = gauss(1, 1, 1);
        struct veil_accountant *acc;
        char err[256];
        long double exact;
        uint64_t v;
        double r;
        (void)state;
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)), 0);
        assert_true(veil_accountant_rho(acc) == 0);
        for (int i = 0; i < 1000; i++) {
                double before = veil_accountant_rho(acc);
                v = veil_accountant_version(acc);
                assert_int_equal(veil_accountant_charge(acc, 0.1, 1, err,
                                                        sizeof(err)),
                                 0);
                assert_true(veil_accountant_rho(acc) > before);
                assert_true(veil_accountant_version(acc) > v);
        }
        /* The double 0.1 times 1000, exact in long double: summing it
         * with rounding to nearest lands below (99.9999999999986). */
        exact = 1000 * (long double)0.1;
        assert_true((long double)veil_accountant_rho(acc) >= exact);
        assert_near(veil_accountant_rho(acc), 100.0, 1e-9);
        assert_int_equal(veil_accountant_steps(acc), 1000);

        r = veil_accountant_rho(acc);
        v = veil_accountant_version(acc);
        err[0] = 0;
        assert_int_equal(veil_accountant_charge(acc, -0.5, 0, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_non_null(strstr(err, "never goes down"));
        assert_int_equal(veil_accountant_charge(acc, NAN, 0, err, sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_accountant_charge(acc, -INFINITY, 0, err,
                                                sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_accountant_charge(acc, INFINITY, 0, err,
                                                sizeof(err)),
                         -VEIL_EINVAL);
        assert_true(veil_accountant_rho(acc) == r);
        assert_int_equal(veil_accountant_version(acc), v);
        /* A zero charge still counts its steps and bumps the version. */
        assert_int_equal(veil_accountant_charge(acc, 0, 3, err, sizeof(err)),
                         0);
        assert_true(veil_accountant_rho(acc) == r);
        assert_int_equal(veil_accountant_steps(acc), 1003);
        assert_true(veil_accountant_version(acc) > v);
        veil_accountant_free(acc);
}

static void test_step_gaussian_window_cap(void **state) {
        struct veil_dp_mech m = gauss(2, 3, 10);
        struct veil_accountant *acc;
        double unit = 1 / (2.0 * 4), cost, charged;
        char err[256];
        (void)state;
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)), 0);
        for (int i = 0; i < 5; i++) {
                assert_int_equal(veil_accountant_step_cost(acc, 7, &cost, err,
                                                           sizeof(err)),
                                 0);
                assert_int_equal(veil_accountant_charge_step(acc, 7, &charged,
                                                             err, sizeof(err)),
                                 0);
                assert_true(cost == charged);
                if (i < 3) {
                        assert_true(charged >= unit);
                        assert_near(charged, unit, 1e-15);
                } else {
                        assert_true(charged == 0);
                }
        }
        assert_true(veil_accountant_rho(acc) >= 3 * unit);
        assert_near(veil_accountant_rho(acc), 3 * unit, 1e-12);
        assert_int_equal(veil_accountant_steps(acc), 5);
        /* A new window charges again. */
        assert_int_equal(veil_accountant_charge_step(acc, 8, &charged, err,
                                                     sizeof(err)),
                         0);
        assert_near(charged, unit, 1e-15);
        assert_near(veil_accountant_rho(acc), 4 * unit, 1e-12);
        veil_accountant_free(acc);
}

static void test_step_tree_levels(void **state) {
        struct veil_dp_mech m = tree(3, 8, 2);
        struct veil_accountant *acc;
        double unit = 1 / (2.0 * 9), charged;
        char err[256];
        (void)state;
        assert_int_equal(veil_accountant_new(&acc, &m, err, sizeof(err)), 0);
        for (uint64_t k = 1; k <= 8; k++) {
                int pow2 = (k & (k - 1)) == 0;
                assert_int_equal(veil_accountant_charge_step(acc, 0, &charged,
                                                             err, sizeof(err)),
                                 0);
                if (pow2)
                        assert_near(charged, unit, 1e-15);
                else
                        assert_true(charged == 0);
                assert_near(veil_accountant_rho(acc),
                                    veil_dp_tree_depth(k) * unit, 1e-12);
        }
        /* Four levels for a tree of 8; the next tree starts over. */
        for (int k = 1; k <= 3; k++)
                assert_int_equal(veil_accountant_charge_step(acc, 1, NULL, err,
                                                             sizeof(err)),
                                 0);
        assert_near(veil_accountant_rho(acc), (4 + 2) * unit, 1e-12);
        veil_accountant_free(acc);
}

/* p participations per tree: level l costs p·min(p, 2^l) units, charged
 * when the level opens; the horizon and the step charges agree, and a
 * brute force over every placement of p steps in a tree of 8 never finds
 * a larger Σ_nodes n² than what is charged. */
static void test_step_tree_participations(void **state) {
        char err[256];
        (void)state;
        for (uint64_t p = 1; p <= 4; p++) {
                struct veil_dp_mech m = tree(1, 8, 1);
                m.max_per_user = p;
                struct veil_accountant *acc;
                double unit = 0.5, total = 0, charged, rho;
                assert_int_equal(veil_accountant_new(&acc, &m, err,
                                                     sizeof(err)),
                                 0);
                for (int k = 1; k <= 8; k++) {
                        veil_accountant_charge_step(acc, 0, &charged, err,
                                                    sizeof(err));
                        total += charged;
                }
                double want = 0;
                for (int l = 0; l < 4; l++)
                        want += (double)(p * (p < (1u << l) ? p : (1u << l)));
                assert_near(total, want * unit, 1e-12);
                assert_int_equal(veil_dp_rho(&m, &rho, err, sizeof(err)), 0);
                assert_near(rho, want * unit, 1e-12);
                /* Brute force: every set of p distinct leaves of 8. */
                double worst = 0;
                for (unsigned set = 0; set < 256; set++) {
                        if ((uint64_t)__builtin_popcount(set) != p)
                                continue;
                        double sq = 0;
                        for (int l = 0; l < 4; l++)
                                for (int node = 0; node < (8 >> l); node++) {
                                        int n = __builtin_popcount(
                                                (set >> (node << l)) &
                                                ((1u << (1u << l)) - 1));
                                        sq += (double)n * n;
                                }
                        worst = sq > worst ? sq : worst;
                }
                assert_true(worst <= want + 1e-9);
                print_message("p=%llu: charged %g units, worst placement "
                              "%g\n",
                              (unsigned long long)p, want, worst);
                veil_accountant_free(acc);
        }
}

static char tmpdir[512];

static int setup_tmp(void **state) {
        const char *base = getenv("TMPDIR");
        (void)state;
        snprintf(tmpdir, sizeof(tmpdir), "%s/test_accountant.XXXXXX",
                 base && *base ? base : "/tmp");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state) {
        DIR *d = opendir(tmpdir);
        struct dirent *e;
        char p[1024];
        (void)state;
        if (!d)
                return 0;
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
                unlink(p);
        }
        closedir(d);
        rmdir(tmpdir);
        return 0;
}

static int count_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *e;
        int n = 0;
        assert_non_null(d);
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

static void test_save_load_roundtrip(void **state) {
        struct veil_dp_mech m = gauss(1.5, 2, 4);
        struct veil_accountant *a, *b;
        char err[256], path[600];
        struct stat st;
        (void)state;
        snprintf(path, sizeof(path), "%s/acct.bin", tmpdir);
        assert_int_equal(veil_accountant_new(&a, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_charge(a, 0.123456789, 5, err,
                                                sizeof(err)),
                         0);
        assert_int_equal(veil_accountant_charge_step(a, 3, NULL, err,
                                                     sizeof(err)),
                         0);
        assert_ok(veil_accountant_save(a, path, err, sizeof(err)), err);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 8192); /* two 4 KiB slots */
        /* Nothing left behind by the atomic write. */
        assert_int_equal(count_entries(tmpdir), 1);
        /* Saving again writes the file in place. */
        assert_ok(veil_accountant_save(a, path, err, sizeof(err)), err);
        assert_int_equal(count_entries(tmpdir), 1);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 8192);

        assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)), 0);
        assert_ok(veil_accountant_load(b, path, err, sizeof(err)), err);
        assert_true(veil_accountant_rho(b) == veil_accountant_rho(a));
        assert_int_equal(veil_accountant_steps(b), veil_accountant_steps(a));
        assert_true(veil_accountant_version(b) > veil_accountant_version(a));
        veil_accountant_free(a);
        veil_accountant_free(b);
}

static void write_file(const char *path, const unsigned char *p, size_t n) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(p, 1, n, f), n);
        fclose(f);
}

static void test_corrupt_refused(void **state) {
        struct veil_dp_mech m = tree(2, 64, 3);
        struct veil_accountant *a, *b;
        unsigned char rec[VEIL_ACCOUNTANT_RECORD_SIZE + 1];
        char err[768], path[600];
        double rho;
        uint64_t v;
        (void)state;
        snprintf(path, sizeof(path), "%s/acct.bin", tmpdir);
        assert_int_equal(veil_accountant_new(&a, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_charge(a, 0.5, 1, err, sizeof(err)),
                         0);
        veil_accountant_encode(a, rec);

        assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_charge(b, 0.25, 1, err, sizeof(err)),
                         0);
        rho = veil_accountant_rho(b);
        v = veil_accountant_version(b);
        /* Every single flipped bit, anywhere in the record, is caught. */
        for (size_t i = 0; i < VEIL_ACCOUNTANT_RECORD_SIZE; i++) {
                for (int bit = 0; bit < 8; bit += 3) {
                        rec[i] ^= (unsigned char)(1u << bit);
                        write_file(path, rec, VEIL_ACCOUNTANT_RECORD_SIZE);
                        err[0] = 0;
                        assert_int_equal(veil_accountant_load(b, path, err,
                                                              sizeof(err)),
                                         -VEIL_EDECODE);
                        assert_non_null(strstr(err, path));
                        assert_non_null(strstr(err, "refusing"));
                        rec[i] ^= (unsigned char)(1u << bit);
                }
        }
        assert_true(veil_accountant_rho(b) == rho);
        assert_int_equal(veil_accountant_version(b), v);
        /* Truncated and overlong files. */
        write_file(path, rec, VEIL_ACCOUNTANT_RECORD_SIZE - 1);
        assert_int_equal(veil_accountant_load(b, path, err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "bytes"));
        rec[VEIL_ACCOUNTANT_RECORD_SIZE] = 0;
        write_file(path, rec, VEIL_ACCOUNTANT_RECORD_SIZE + 1);
        assert_int_equal(veil_accountant_load(b, path, err, sizeof(err)),
                         -VEIL_EDECODE);
        write_file(path, rec, 0);
        assert_int_equal(veil_accountant_load(b, path, err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_true(veil_accountant_rho(b) == rho);
        /* The intact record loads. */
        write_file(path, rec, VEIL_ACCOUNTANT_RECORD_SIZE);
        assert_ok(veil_accountant_load(b, path, err, sizeof(err)), err);
        assert_true(veil_accountant_rho(b) == veil_accountant_rho(a));
        /* And a missing file is told apart from a corrupt one. */
        unlink(path);
        err[0] = 0;
        assert_int_equal(veil_accountant_load(b, path, err, sizeof(err)),
                         -VEIL_ENOENT);
        assert_non_null(strstr(err, path));
        veil_accountant_free(a);
        veil_accountant_free(b);
}

/* A record of format `format` with lineage bytes lin, re-checksummed as
 * the writer of that format would. */
static void as_format(unsigned char *rec, uint32_t format, uint32_t lin) {
        size_t body = format >= 3 ? 112 : 104; /* what the checksum covers */
        for (int i = 0; i < 4; i++) {
                rec[8 + i] = (unsigned char)(format >> (8 * i));
                rec[100 + i] = (unsigned char)(lin >> (8 * i));
        }
        crypto_generichash(rec + body, VEIL_ACCOUNTANT_RECORD_SIZE - body, rec,
                           body, NULL, 0);
}

/* The lineage: drawn for a new state, kept by the file, not taken from a
 * record merged in (a checkpoint's); an older veil's record (format 1,
 * zero where the lineage is) reads as lineage 0. */
static void test_lineage(void **state) {
        struct veil_dp_mech m = gauss(1.5, 2, 4);
        struct veil_accountant *a, *b, *c;
        unsigned char rec[VEIL_ACCOUNTANT_RECORD_SIZE];
        char err[768], path[600];
        (void)state;
        snprintf(path, sizeof(path), "%s/lineage.bin", tmpdir);
        assert_int_equal(veil_accountant_new(&a, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)), 0);
        assert_true(veil_accountant_lineage(a) != 0);
        /* Equal with probability 2^-32. */
        assert_true(veil_accountant_lineage(a) != veil_accountant_lineage(b));
        assert_int_equal(veil_accountant_charge(a, 0.5, 1, err, sizeof(err)),
                         0);
        assert_ok(veil_accountant_save(a, path, err, sizeof(err)), err);
        assert_ok(veil_accountant_save(a, path, err, sizeof(err)), err);
        assert_ok(veil_accountant_load(b, path, err, sizeof(err)), err);
        assert_int_equal(veil_accountant_lineage(b),
                         veil_accountant_lineage(a));
        /* A checkpoint's record of another lineage: its spend merges in,
         * the lineage stays. */
        assert_int_equal(veil_accountant_new(&c, &m, err, sizeof(err)), 0);
        uint32_t own = veil_accountant_lineage(c);
        veil_accountant_encode(a, rec);
        assert_ok(veil_accountant_restore(c, rec, sizeof(rec), err,
                                          sizeof(err)),
                  err);
        assert_true(veil_accountant_rho(c) == veil_accountant_rho(a));
        assert_int_equal(veil_accountant_lineage(c), own);
        /* Format 1: lineage 0, in a one-record file and in slots. */
        as_format(rec, 1, 0);
        write_file(path, rec, sizeof(rec));
        assert_ok(veil_accountant_load(c, path, err, sizeof(err)), err);
        assert_int_equal(veil_accountant_lineage(c), 0);
        /* ... and saved on, it keeps 0, which its updates carried. */
        assert_ok(veil_accountant_save(c, path, err, sizeof(err)), err);
        veil_accountant_free(c);
        assert_int_equal(veil_accountant_new(&c, &m, err, sizeof(err)), 0);
        assert_ok(veil_accountant_load(c, path, err, sizeof(err)), err);
        assert_int_equal(veil_accountant_lineage(c), 0);
        /* Format 1 with bytes where it had none, or a format from a later
         * veil: refused. */
        as_format(rec, 1, 7);
        write_file(path, rec, sizeof(rec));
        assert_int_equal(veil_accountant_load(c, path, err, sizeof(err)),
                         -VEIL_EDECODE);
        as_format(rec, 4, 7);
        write_file(path, rec, sizeof(rec));
        assert_int_equal(veil_accountant_load(c, path, err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "format 4"));
        /* A later format is named whatever its checksum covers. */
        rec[120] ^= 1;
        write_file(path, rec, sizeof(rec));
        assert_int_equal(veil_accountant_load(c, path, err, sizeof(err)),
                         -VEIL_EDECODE);
        assert_non_null(strstr(err, "written by a newer veil"));
        veil_accountant_free(a);
        veil_accountant_free(b);
        veil_accountant_free(c);
}

/* The sampler is not the exact discrete Gaussian (noise.h): a stage's ε
 * adds N·ln((1+η)/(1-η)) for the N = ρ·coords·2σ² coordinate draws a user
 * can move, and the budget check counts it; the rate goes into the record
 * (format 3), and a format-2 record, which has none, still loads. */
static void test_sampler_error(void **state) {
        struct veil_dp_mech m = gauss(1.5, 2, 4), ideal = m;
        struct veil_accountant *a, *c;
        unsigned char rec[VEIL_ACCOUNTANT_RECORD_SIZE];
        char err[768], path[600];
        const double delta = 1e-8, eta = 0x1p-55;
        double e, e0, ec;
        (void)state;
        m.coords = 1500000;
        double per = veil_dp_draws_per_rho(&m);
        assert_true(per >= 1500000.0 * 2 * 1.5 * 1.5);
        assert_true(veil_dp_draws_per_rho(&ideal) == 0);
        assert_int_equal(veil_accountant_new(&a, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_charge(a, 0.8, 2, err, sizeof(err)),
                         0);
        double rho = veil_accountant_rho(a);
        assert_ok(veil_accountant_epsilon(a, delta, &e, err, sizeof(err)),
                  err);
        e0 = eps_of(rho, delta);
        double n = rho * per, add = n * (log1p(eta) - log1p(-eta));
        print_message("ideal %.17g, sampled %.17g: +%.3g (N %.3g: +%.3g)\n",
                      e0, e, e - e0, n, add);
        assert_true(e - e0 >= add);
        /* Beyond that only δ/(1+η)^N (a relative N·η less δ, worth
         * N·η/(α-1) in ε) and the tail's ~10^-27 of δ. */
        assert_true(e - e0 <= 1.5 * add);
        /* No coordinates: the exact sampler's ε, to the bit. */
        assert_ok(veil_dp_epsilon_sampled(rho, delta, 0, &ec, err,
                                          sizeof(err)),
                  err);
        assert_true(ec == e0);
        /* A budget between the two is exceeded. */
        assert_int_equal(veil_accountant_would_exceed(a, 0, e0 + add / 2,
                                                      delta, err, sizeof(err)),
                         1);
        assert_int_equal(veil_accountant_would_exceed(a, 0, e, delta, err,
                                                      sizeof(err)),
                         0);
        /* So many draws that (1+η)^N leaves nothing of δ: no bound. */
        assert_ok(veil_dp_epsilon_sampled(rho, delta, 1e30, &ec, err,
                                          sizeof(err)),
                  err);
        assert_true(isinf(ec));
        assert_int_equal(veil_dp_epsilon_sampled(rho, delta, -1, &ec, err,
                                                 sizeof(err)),
                         -VEIL_EINVAL);
        /* The rate travels with the record: a state without coordinates
         * (the operator's `dp_model accountant`) reports the stage's ε. */
        assert_int_equal(veil_accountant_new(&c, &ideal, err, sizeof(err)),
                         0);
        veil_accountant_encode(a, rec);
        assert_ok(veil_accountant_restore(c, rec, sizeof(rec), err,
                                          sizeof(err)),
                  err);
        assert_true(veil_accountant_draws_per_rho(c) == per);
        assert_ok(veil_accountant_epsilon(c, delta, &ec, err, sizeof(err)),
                  err);
        assert_true(ec == e);
        snprintf(path, sizeof(path), "%s/sampler.bin", tmpdir);
        assert_ok(veil_accountant_save(a, path, err, sizeof(err)), err);
        veil_accountant_free(c);
        assert_int_equal(veil_accountant_new(&c, &ideal, err, sizeof(err)),
                         0);
        assert_ok(veil_accountant_load(c, path, err, sizeof(err)), err);
        assert_true(veil_accountant_draws_per_rho(c) == per);
        /* A format-2 record: no rate, the spend alone. */
        veil_accountant_free(c);
        assert_int_equal(veil_accountant_new(&c, &ideal, err, sizeof(err)),
                         0);
        as_format(rec, 2, veil_accountant_lineage(a));
        assert_ok(veil_accountant_restore(c, rec, sizeof(rec), err,
                                          sizeof(err)),
                  err);
        assert_true(veil_accountant_rho(c) == rho);
        assert_true(veil_accountant_draws_per_rho(c) == 0);
        /* A format-3 record whose rate is not a number: refused. */
        veil_accountant_encode(a, rec);
        for (int i = 0; i < 8; i++)
                rec[104 + i] = 0xff; /* a NaN */
        as_format(rec, 3, veil_accountant_lineage(a));
        assert_int_equal(veil_accountant_restore(c, rec, sizeof(rec), err,
                                                 sizeof(err)),
                         -VEIL_EDECODE);
        /* Another sender's larger rate raises it (a new version, saved
         * with the state); a smaller one, or one that is not a finite
         * number ≥ 0, does not lower or change it. */
        uint64_t v = veil_accountant_version(a);
        assert_int_equal(veil_accountant_raise_draws(a, per / 2, err,
                                                     sizeof(err)),
                         0);
        assert_true(veil_accountant_draws_per_rho(a) == per);
        assert_int_equal(veil_accountant_version(a), v);
        const double not_rates[] = {NAN, -1, INFINITY};
        for (int i = 0; i < 3; i++)
                assert_int_equal(veil_accountant_raise_draws(a, not_rates[i],
                                                             err, sizeof(err)),
                                 -VEIL_EINVAL);
        assert_true(veil_accountant_draws_per_rho(a) == per);
        assert_int_equal(veil_accountant_raise_draws(a, per * 1e6, err,
                                                     sizeof(err)),
                         1);
        assert_true(veil_accountant_version(a) > v);
        double e_raised;
        assert_ok(veil_accountant_epsilon(a, delta, &e_raised, err,
                                          sizeof(err)),
                  err);
        assert_true(e_raised - e0 >= add * 1e6 * 0.99);
        assert_ok(veil_accountant_save(a, path, err, sizeof(err)), err);
        veil_accountant_free(c);
        assert_int_equal(veil_accountant_new(&c, &m, err, sizeof(err)), 0);
        assert_ok(veil_accountant_load(c, path, err, sizeof(err)), err);
        assert_true(veil_accountant_draws_per_rho(c) == per * 1e6);
        veil_accountant_free(a);
        veil_accountant_free(c);
}

static void read_file(const char *path, unsigned char *p, size_t n) {
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        assert_int_equal(fread(p, 1, n, f), n);
        fclose(f);
}

/* The two slots: saves alternate between them, so the newest record is
 * never the one overwritten; a damaged slot is refused, not skipped (it
 * may hold the newest spend); an older veil's one-record file loads and
 * the next save turns it into two slots. */
static void test_two_slots(void **state) {
        struct veil_dp_mech m = gauss(1.5, 2, 4);
        struct veil_accountant *a, *b;
        static unsigned char f[8192], g[8192];
        unsigned char rec[VEIL_ACCOUNTANT_RECORD_SIZE];
        char err[768], path[600];
        (void)state;
        snprintf(path, sizeof(path), "%s/slots.bin", tmpdir);
        unlink(path);
        assert_int_equal(veil_accountant_new(&a, &m, err, sizeof(err)), 0);
        double rho[4];
        for (int i = 0; i < 4; i++) {
                assert_int_equal(veil_accountant_charge(a, 0.25, 1, err,
                                                        sizeof(err)),
                                 0);
                rho[i] = veil_accountant_rho(a);
                assert_ok(veil_accountant_save(a, path, err, sizeof(err)),
                          err);
                read_file(path, f, sizeof(f));
                /* Save i went to slot i % 2; the other keeps save i-1. */
                unsigned char *mine = f + (size_t)(i % 2) * 4096,
                              *other = f + (size_t)((i + 1) % 2) * 4096;
                veil_accountant_encode(a, rec);
                assert_memory_equal(mine, rec, sizeof(rec));
                if (i)
                        assert_memory_not_equal(other, rec, sizeof(rec));
        }
        /* Loads take the larger of the two. */
        assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)), 0);
        assert_ok(veil_accountant_load(b, path, err, sizeof(err)), err);
        assert_true(veil_accountant_rho(b) == rho[3]);
        veil_accountant_free(b);
        /* A flipped bit in either slot: refused, naming the file. */
        for (int slot = 0; slot < 2; slot++) {
                memcpy(g, f, sizeof(g));
                g[(size_t)slot * 4096 + 40] ^= 4;
                write_file(path, g, sizeof(g));
                assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)),
                                 0);
                err[0] = 0;
                assert_int_equal(veil_accountant_load(b, path, err,
                                                      sizeof(err)),
                                 -VEIL_EDECODE);
                assert_non_null(strstr(err, path));
                veil_accountant_free(b);
        }
        /* An empty slot is fine (a file saved once); bytes past a record
         * or two empty slots are not. */
        memcpy(g, f, sizeof(g));
        memset(g + 4096, 0, 4096);
        write_file(path, g, sizeof(g));
        assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)), 0);
        assert_ok(veil_accountant_load(b, path, err, sizeof(err)), err);
        veil_accountant_free(b);
        g[4096 + 200] = 1;
        write_file(path, g, sizeof(g));
        assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_load(b, path, err, sizeof(err)),
                         -VEIL_EDECODE);
        veil_accountant_free(b);
        memset(g, 0, sizeof(g));
        write_file(path, g, sizeof(g));
        assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_load(b, path, err, sizeof(err)),
                         -VEIL_EDECODE);
        veil_accountant_free(b);
        /* A one-record file of an older veil. */
        veil_accountant_encode(a, rec);
        write_file(path, rec, sizeof(rec));
        assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)), 0);
        assert_ok(veil_accountant_load(b, path, err, sizeof(err)), err);
        assert_true(veil_accountant_rho(b) == rho[3]);
        assert_ok(veil_accountant_save(b, path, err, sizeof(err)), err);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 8192);
        veil_accountant_free(b);
        veil_accountant_free(a);
        unlink(path);
}

/* A load takes the unit of the newer slot, whichever slot holds it (each
 * save goes to the older one, so after n saves the newest is slot
 * (n-1) % 2, one version above the other). */
static void test_newest_slot_unit(void **state) {
        struct veil_dp_mech m = gauss(1.5, 2, 4);
        char err[768], path[600];
        (void)state;
        snprintf(path, sizeof(path), "%s/units.bin", tmpdir);
        for (uint64_t n = 3; n <= 4; n++) {
                struct veil_accountant *a, *b;
                uint64_t unit = 99;
                unlink(path);
                assert_int_equal(veil_accountant_new(&a, &m, err, sizeof(err)),
                                 0);
                for (uint64_t u = 0; u < n; u++) {
                        assert_int_equal(veil_accountant_charge_step(
                                                 a, u, NULL, err, sizeof(err)),
                                         0);
                        assert_ok(veil_accountant_save(a, path, err,
                                                       sizeof(err)),
                                  err);
                }
                assert_int_equal(veil_accountant_new(&b, &m, err, sizeof(err)),
                                 0);
                assert_ok(veil_accountant_load(b, path, err, sizeof(err)), err);
                assert_int_equal(veil_accountant_unit(b, &unit), 1);
                assert_int_equal(unit, n - 1);
                assert_true(veil_accountant_rho(b) == veil_accountant_rho(a));
                veil_accountant_free(a);
                veil_accountant_free(b);
        }
        unlink(path);
}

static void test_restore_never_lowers(void **state) {
        struct veil_dp_mech m = gauss(1, 1, 1);
        struct veil_accountant *hi, *lo;
        unsigned char rec[VEIL_ACCOUNTANT_RECORD_SIZE];
        char err[256], path[600];
        uint64_t v;
        (void)state;
        snprintf(path, sizeof(path), "%s/old.bin", tmpdir);
        assert_int_equal(veil_accountant_new(&hi, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_new(&lo, &m, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_charge(hi, 2.0, 20, err, sizeof(err)),
                         0);
        assert_int_equal(veil_accountant_charge(lo, 0.5, 5, err, sizeof(err)),
                         0);
        /* An old (lower) checkpoint replayed into a running accountant. */
        assert_ok(veil_accountant_save(lo, path, err, sizeof(err)), err);
        v = veil_accountant_version(hi);
        assert_ok(veil_accountant_load(hi, path, err, sizeof(err)), err);
        assert_true(veil_accountant_rho(hi) >= 2.0);
        assert_int_equal(veil_accountant_steps(hi), 20);
        assert_true(veil_accountant_version(hi) > v);
        /* The higher one wins the other way round too. */
        veil_accountant_encode(hi, rec);
        assert_int_equal(veil_accountant_restore(lo, rec, sizeof(rec), err,
                                                 sizeof(err)),
                         0);
        assert_true(veil_accountant_rho(lo) == veil_accountant_rho(hi));
        assert_int_equal(veil_accountant_steps(lo), 20);
        veil_accountant_free(hi);
        veil_accountant_free(lo);
}

/* After a restart the plugin's per-user counters may be older than the
 * accountant, so a unit in progress is charged for a second session. */
static void test_restore_reopens_unit(void **state) {
        struct veil_dp_mech g = gauss(1, 2, 10), t = tree(1, 16, 4);
        struct veil_accountant *a, *b;
        unsigned char rec[VEIL_ACCOUNTANT_RECORD_SIZE];
        double c, unit = 0.5;
        char err[256];
        (void)state;

        assert_int_equal(veil_accountant_new(&a, &g, err, sizeof(err)), 0);
        for (int i = 0; i < 3; i++)
                veil_accountant_charge_step(a, 9, NULL, err, sizeof(err));
        assert_near(veil_accountant_rho(a), 2 * unit, 1e-12);
        veil_accountant_encode(a, rec);
        assert_int_equal(veil_accountant_new(&b, &g, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_restore(b, rec, sizeof(rec), err,
                                                 sizeof(err)),
                         0);
        for (int i = 0; i < 3; i++)
                veil_accountant_charge_step(b, 9, NULL, err, sizeof(err));
        assert_near(veil_accountant_rho(b), 4 * unit, 1e-12);
        veil_accountant_free(a);
        veil_accountant_free(b);

        assert_int_equal(veil_accountant_new(&a, &t, err, sizeof(err)), 0);
        for (int i = 0; i < 5; i++)
                veil_accountant_charge_step(a, 0, NULL, err, sizeof(err));
        assert_near(veil_accountant_rho(a), 3 * unit, 1e-12);
        veil_accountant_encode(a, rec);
        assert_int_equal(veil_accountant_new(&b, &t, err, sizeof(err)), 0);
        assert_int_equal(veil_accountant_restore(b, rec, sizeof(rec), err,
                                                 sizeof(err)),
                         0);
        /* Step 6: no new level, but a user of the first session may
         * join again, in nodes the first one's step sits in: the open
         * levels 0, 1, 2 go from 1 each to 2, 4, 4 (2·min(2, 2^l)). */
        assert_int_equal(veil_accountant_step_cost(b, 0, &c, err, sizeof(err)),
                         0);
        assert_near(c, 7 * unit, 1e-12);
        veil_accountant_charge_step(b, 0, NULL, err, sizeof(err));
        veil_accountant_charge_step(b, 0, &c, err, sizeof(err)); /* 7 */
        assert_true(c == 0);
        veil_accountant_charge_step(b, 0, &c, err, sizeof(err)); /* 8 */
        assert_near(c, 4 * unit, 1e-12); /* level 3, two participations */
        /* The whole tree: what two steps of one user in a tree of 8 can
         * move the noised nodes by, squared: 2 + 4 + 4 + 4. */
        assert_near(veil_accountant_rho(b), 14 * unit, 1e-12);
        /* A second restore in the same tree: three participations, levels
         * 0..3 topped up to 3, 6, 9, 9 (from 2, 4, 4, 4): 13 more. */
        veil_accountant_encode(b, rec);
        assert_int_equal(veil_accountant_restore(b, rec, sizeof(rec), err,
                                                 sizeof(err)),
                         0);
        veil_accountant_charge_step(b, 0, &c, err, sizeof(err)); /* 9 */
        assert_near(c, 13 * unit, 1e-12);
        veil_accountant_charge_step(b, 0, &c, err, sizeof(err)); /* 10 */
        assert_true(c == 0);
        assert_near(veil_accountant_rho(b), 27 * unit, 1e-12);
        /* A new tree after the restore is a single participation. */
        veil_accountant_charge_step(b, 1, &c, err, sizeof(err));
        assert_near(c, unit, 1e-12);
        veil_accountant_charge_step(b, 1, &c, err, sizeof(err));
        assert_near(c, unit, 1e-12);
        veil_accountant_free(a);
        veil_accountant_free(b);
}

static void test_save_failure_is_reported(void **state) {
        struct veil_dp_mech m = gauss(1, 1, 1);
        struct veil_accountant *a;
        char err[256];
        (void)state;
        assert_int_equal(veil_accountant_new(&a, &m, err, sizeof(err)), 0);
        err[0] = 0;
        assert_int_equal(veil_accountant_save(a, "/nonexistent-veil-dir/acct",
                                              err, sizeof(err)),
                         -VEIL_EIO);
        assert_non_null(strstr(err, "/nonexistent-veil-dir/acct"));
        assert_non_null(strstr(err, "do not release"));
        veil_accountant_free(a);
}

static void test_budget_exhaustion(void **state) {
        struct veil_dp_mech m = gauss(8, 1, 1);
        struct veil_accountant *a;
        double budget = 3.0, delta = 1e-5, cost, eps;
        char err[256];
        uint64_t window = 0;
        int rc;
        (void)state;
        assert_int_equal(veil_accountant_new(&a, &m, err, sizeof(err)), 0);
        for (;;) {
                assert_int_equal(veil_accountant_step_cost(a, window, &cost,
                                                           err, sizeof(err)),
                                 0);
                rc = veil_accountant_would_exceed(a, cost, budget, delta, err,
                                                  sizeof(err));
                assert_true(rc == 0 || rc == 1);
                if (rc)
                        break;
                assert_int_equal(veil_accountant_charge_step(a, window++, NULL,
                                                             err, sizeof(err)),
                                 0);
                assert_true(window < 1000);
        }
        assert_true(window >= 2);
        assert_int_equal(veil_accountant_epsilon(a, delta, &eps, err,
                                                 sizeof(err)),
                         0);
        assert_true(eps <= budget);
        assert_true(eps_of(veil_accountant_rho(a) + cost, delta) > budget);
        assert_int_equal(veil_accountant_would_exceed(a, 0, budget, delta, err,
                                                      sizeof(err)),
                         0);
        print_message("budget eps %.2f at sigma 8: %llu windows, eps %.4f\n",
                      budget, (unsigned long long)window, eps);
        assert_int_equal(veil_accountant_would_exceed(a, -1, budget, delta, err,
                                                      sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_accountant_would_exceed(a, 0, NAN, delta, err,
                                                      sizeof(err)),
                         -VEIL_EINVAL);
        assert_int_equal(veil_accountant_would_exceed(a, 0, budget, 2, err,
                                                      sizeof(err)),
                         -VEIL_EINVAL);
        veil_accountant_free(a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reference_reproduces_file),
                cmocka_unit_test(test_conformance_gaussian),
                cmocka_unit_test(test_conformance_ten_releases),
                cmocka_unit_test(test_conformance_zcdp),
                cmocka_unit_test(test_conformance_tree),
                cmocka_unit_test(test_never_below_exact),
                cmocka_unit_test(test_rounds_up),
                cmocka_unit_test(test_format_directions),
                cmocka_unit_test(test_epsilon_edges),
                cmocka_unit_test(test_tree_depth),
                cmocka_unit_test(test_noise_for_epsilon),
                cmocka_unit_test(test_new_refuses_bad_mechanisms),
                cmocka_unit_test(test_charge_monotone),
                cmocka_unit_test(test_step_gaussian_window_cap),
                cmocka_unit_test(test_step_tree_levels),
                cmocka_unit_test_setup_teardown(test_save_load_roundtrip,
                                                setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_corrupt_refused,
                                                setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_two_slots, setup_tmp,
                                                teardown_tmp),
                cmocka_unit_test_setup_teardown(test_lineage, setup_tmp,
                                                teardown_tmp),
                cmocka_unit_test_setup_teardown(test_sampler_error, setup_tmp,
                                                teardown_tmp),
                cmocka_unit_test_setup_teardown(test_newest_slot_unit,
                                                setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_restore_never_lowers,
                                                setup_tmp, teardown_tmp),
                cmocka_unit_test(test_restore_reopens_unit),
                cmocka_unit_test(test_step_tree_participations),
                cmocka_unit_test(test_save_failure_is_reported),
                cmocka_unit_test(test_budget_exhaustion),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
