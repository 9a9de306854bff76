/*
 * dp_cmd.c — the privacy calculator: `veil dp_model epsilon …` and
 * `veil dp_model noise …`, the accountant's arithmetic for operators
 * choosing a noise multiplier before a pipeline runs.
 */
#include "dp_cmd.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accountant.h"
#include "share.h"

struct calc {
        struct veil_dp_mech m;
        double delta, eps, rho, draws;
        int have_sigma, have_eps, have_delta, have_rho, have_draws;
        int have_windows, have_steps, have_restarts, have_participations;
        int have_mechanism;
};

/* Numbers are decimal and whole: a sign only where a real may carry one,
 * no hex, no "inf" or "nan", no spaces, nothing after the number; a value
 * a double cannot hold (1e-400, 1e400) or a whole number past 2^64 is out
 * of range rather than read as 0, inf or UINT64_MAX. */
static int decimal(const char *s) {
        if (*s == '+' || *s == '-')
                s++;
        size_t digits = strspn(s, "0123456789");
        s += digits;
        if (*s == '.') {
                size_t frac = strspn(s + 1, "0123456789");
                digits += frac;
                s += 1 + frac;
        }
        if (!digits)
                return 0;
        if (*s == 'e' || *s == 'E') {
                s++;
                if (*s == '+' || *s == '-')
                        s++;
                size_t e = strspn(s, "0123456789");
                if (!e)
                        return 0;
                s += e;
        }
        return !*s;
}

static int num(const char *s, double *out) {
        if (!decimal(s))
                return 0;
        errno = 0;
        *out = strtod(s, NULL);
        return errno != ERANGE && isfinite(*out);
}

static int whole(const char *s, uint64_t *out) {
        if (!*s || s[strspn(s, "0123456789")])
                return 0;
        errno = 0;
        unsigned long long v = strtoull(s, NULL, 10);
        *out = v;
        return errno != ERANGE;
}

/* The options' ranges. σ: where `noise` searches (10^-12..10^12); with
 * the horizons below, ρ = W·M/(2σ²) is then a normal double, neither 0
 * (σ = 1e308 made ρ 0, and ε 0, for a positive ρ) nor inf. Participations:
 * what the stage takes (max_contributions, tree_participations); windows,
 * restarts and steps: the accountant's 2^53. */
#define SIGMA_MIN 1e-12
#define SIGMA_MAX 1e12
#define PART_MAX 1000000ull
#define UNITS_MAX (1ull << 53)

static int bad_whole(const char *cmd, const char *o, const char *v,
                     const char *range) {
        fprintf(stderr,
                "dp_model %s: %s must be a whole number in %s, got '%s'\n",
                cmd, o, range, v);
        return 2;
}

static int bad_real(const char *cmd, const char *o, const char *v,
                    const char *range) {
        double x;
        int far = decimal(v) && !num(v, &x);
        fprintf(stderr,
                "dp_model %s: %s must be a decimal number %s, got '%s'%s\n",
                cmd, o, range, v,
                far ? " (outside a double's normal range)" : "");
        return 2;
}

/* Parses the shared options; returns 0 or 2 (usage) after a message. */
static int parse(const char *cmd, int argc, char **argv, struct calc *c) {
        memset(c, 0, sizeof(*c));
        c->m.kind = VEIL_DP_GAUSSIAN;
        c->m.max_per_user = 1;
        c->m.tree_steps = 1;
        c->m.units = 1;
        static const char *const known[] = {
                "--mechanism", "--noise-multiplier", "--participations",
                "--windows",   "--steps",            "--restarts",
                "--delta",     "--rho",              "--epsilon",
                "--draws-per-rho"};
        for (int i = 1; i < argc; i++) {
                const char *o = argv[i];
                size_t k = 0;
                while (k < sizeof(known) / sizeof(*known) &&
                       strcmp(o, known[k]))
                        k++;
                if (k == sizeof(known) / sizeof(*known)) {
                        fprintf(stderr, "dp_model %s: unknown option %s\n",
                                cmd, o);
                        return 2;
                }
                if (i + 1 >= argc) {
                        fprintf(stderr, "dp_model %s: %s needs a value\n", cmd,
                                o);
                        return 2;
                }
                const char *v = argv[++i];
                if (!strcmp(o, "--mechanism")) {
                        c->have_mechanism = 1;
                        if (!strcmp(v, "gaussian"))
                                c->m.kind = VEIL_DP_GAUSSIAN;
                        else if (!strcmp(v, "tree"))
                                c->m.kind = VEIL_DP_TREE;
                        else {
                                fprintf(stderr,
                                        "dp_model %s: --mechanism must be "
                                        "gaussian or tree, got '%s'\n",
                                        cmd, v);
                                return 2;
                        }
                } else if (!strcmp(o, "--noise-multiplier")) {
                        if (!num(v, &c->m.sigma) || c->m.sigma < SIGMA_MIN ||
                            c->m.sigma > SIGMA_MAX)
                                return bad_real(cmd, o, v,
                                                "in [1e-12, 1e12]");
                        c->have_sigma = 1;
                } else if (!strcmp(o, "--participations")) {
                        if (!whole(v, &c->m.max_per_user) ||
                            c->m.max_per_user < 1 ||
                            c->m.max_per_user > PART_MAX)
                                return bad_whole(cmd, o, v, "[1, 10^6]");
                        c->have_participations = 1;
                } else if (!strcmp(o, "--windows") ||
                           !strcmp(o, "--restarts")) {
                        if (!whole(v, &c->m.units) || c->m.units < 1 ||
                            c->m.units > UNITS_MAX)
                                return bad_whole(cmd, o, v, "[1, 2^53]");
                        if (o[2] == 'w')
                                c->have_windows = 1;
                        else
                                c->have_restarts = 1;
                } else if (!strcmp(o, "--steps")) {
                        if (!whole(v, &c->m.tree_steps) ||
                            c->m.tree_steps < 1 ||
                            c->m.tree_steps > UNITS_MAX)
                                return bad_whole(cmd, o, v, "[1, 2^53]");
                        c->have_steps = 1;
                } else if (!strcmp(o, "--delta")) {
                        if (!num(v, &c->delta) || !(c->delta > 0) ||
                            !(c->delta < 1))
                                return bad_real(cmd, o, v, "in (0, 1)");
                        c->have_delta = 1;
                } else if (!strcmp(o, "--rho") ||
                           !strcmp(o, "--draws-per-rho")) {
                        int rho = !strcmp(o, "--rho");
                        double *x = rho ? &c->rho : &c->draws;
                        if (!num(v, x) ||
                            !(*x == 0 || (*x >= 1e-307 && *x <= 1e308)))
                                return bad_real(
                                        cmd, o, v,
                                        "equal to 0 or in [1e-307, 1e308]");
                        *(rho ? &c->have_rho : &c->have_draws) = 1;
                } else { /* --epsilon */
                        if (!num(v, &c->eps) ||
                            !(c->eps >= 1e-307 && c->eps <= 1e308))
                                return bad_real(cmd, o, v,
                                                "in [1e-307, 1e308]");
                        c->have_eps = 1;
                }
        }
        if (!c->have_delta) {
                fprintf(stderr, "dp_model %s: --delta is required\n", cmd);
                return 2;
        }
        /* An option of the other mechanism would otherwise be ignored, and
         * the ε printed would look like an answer to the question asked. */
        if (c->m.kind == VEIL_DP_GAUSSIAN &&
            (c->have_steps || c->have_restarts)) {
                fprintf(stderr, "dp_model: --steps and --restarts are for "
                                "--mechanism tree; the gaussian mechanism's "
                                "horizon is --participations M per window "
                                "and --windows W\n");
                return 2;
        }
        if (c->m.kind == VEIL_DP_TREE && c->have_windows) {
                fprintf(stderr, "dp_model: --windows is for the gaussian "
                                "mechanism; a tree's horizon is --restarts R "
                                "trees of --steps T\n");
                return 2;
        }
        if (c->have_rho && (c->have_sigma || c->have_mechanism ||
                            c->have_windows ||
                            c->have_steps || c->have_restarts ||
                            c->have_participations)) {
                fprintf(stderr, "dp_model: --rho is a whole horizon's ρ: "
                                "give it with --delta alone (and "
                                "--draws-per-rho)\n");
                return 2;
        }
        /* The rate is a stage's (its accountant file's), which only a ρ
         * from such files goes with. */
        if (c->have_draws && !c->have_rho) {
                fprintf(stderr, "dp_model: --draws-per-rho goes with --rho: "
                                "it is the rate `dp_model accountant` "
                                "prints for an accountant file's ρ\n");
                return 2;
        }
        return 0;
}

/* ε and ρ as printed: 6 digits, rounded up (to nearest, 4.0000000008 was
 * printed as 4, and a ρ of 0.41322314 as 0.413223), so what is read back
 * is never less loss than computed. */
static const char *loss_text(char buf[32], double loss) {
        veil_format_up(buf, 32, loss, 6);
        return buf;
}

static int cmd_epsilon(int argc, char **argv) {
        struct calc c;
        int rc = parse("epsilon", argc, argv, &c);
        if (rc)
                return rc;
        if (c.have_eps) {
                fprintf(stderr, "dp_model epsilon: --epsilon is for `noise`, "
                                "which solves for the noise multiplier\n");
                return 2;
        }
        if (c.have_sigma == c.have_rho) {
                fprintf(stderr, "dp_model epsilon: give --noise-multiplier "
                                "(with the mechanism's horizon) or --rho\n");
                return 2;
        }
        double rho = c.rho, eps, alpha;
        char err[256];
        if ((!c.have_rho && veil_dp_rho(&c.m, &rho, err, sizeof(err))) ||
            (c.have_draws
                     ? veil_dp_epsilon_sampled(rho, c.delta, c.draws, &eps,
                                               err, sizeof(err))
                     : veil_dp_epsilon(rho, c.delta, &eps, &alpha, err,
                                       sizeof(err)))) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        char e[32], r[32];
        printf("epsilon=%s\nrho=%s\ndelta=%.6g\n", loss_text(e, eps),
               loss_text(r, rho), c.delta);
        return 0;
}

static int cmd_noise(int argc, char **argv) {
        struct calc c;
        int rc = parse("noise", argc, argv, &c);
        if (rc)
                return rc;
        if (!c.have_eps || c.have_rho || c.have_sigma) {
                fprintf(stderr, "dp_model noise: --epsilon is required "
                                "(and --rho and --noise-multiplier are for "
                                "`epsilon`)\n");
                return 2;
        }
        double sigma, rho, eps;
        char err[256], text[32];
        if (veil_dp_noise_for_epsilon(&c.m, c.eps, c.delta, &sigma, err,
                                      sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        /* What is printed is what an operator configures: rounded up at
         * the printed precision (rounded to nearest, half the S printed
         * spent more than E), and checked as `epsilon` would compute it,
         * one more unit of the last digit while it is not within E. */
        for (int tries = 0;; tries++) {
                veil_format_up(text, sizeof(text), sigma, 9);
                c.m.sigma = strtod(text, NULL);
                if (veil_dp_rho(&c.m, &rho, err, sizeof(err)) ||
                    veil_dp_epsilon(rho, c.delta, &eps, NULL, err,
                                    sizeof(err))) {
                        fprintf(stderr, "%s\n", err);
                        return 1;
                }
                if (eps <= c.eps)
                        break;
                if (tries == 100) {
                        fprintf(stderr,
                                "dp_model noise: no noise multiplier of 9 "
                                "digits above %s keeps epsilon within %g\n",
                                text, c.eps);
                        return 1;
                }
                sigma = nextafter(c.m.sigma, INFINITY);
        }
        /* ε is within E; rounded up at 6 digits its text could read
         * above E (E = 4.728507 printed 4.72851), so it gets the digits
         * that keep the text within E, as the value is. */
        char e[32], r[32];
        for (int d = 6; d <= 17; d++) {
                veil_format_up(e, sizeof(e), eps, d);
                if (strtod(e, NULL) <= c.eps)
                        break;
        }
        printf("noise_multiplier=%s\nepsilon=%s\nrho=%s\n", text, e,
               loss_text(r, rho));
        return 0;
}

/* The other instances' ρ that the stage kept beside the file (share.h):
 * printed with the total the stage reports, when there is such a file
 * (their releases counted at the file's rate of sampler draws, as the
 * stage counts them). */
static int others(const char *file, double rho_own, double draws,
                  double delta) {
        size_t l = strlen(file), n;
        char *path = malloc(l + sizeof(".others")), err[512];
        void *data = NULL;
        struct veil_share *sh = NULL;
        if (!path)
                return 1;
        memcpy(path, file, l);
        memcpy(path + l, ".others", sizeof(".others"));
        int rc = veil_dp_file_read(path, (size_t)64 << 20, &data, &n, err,
                                   sizeof(err));
        if (rc == -VEIL_ENOENT) {
                free(path);
                return 0;
        }
        if (!rc && (rc = veil_share_new(&sh, "", 0, 0)) == 0 &&
            (rc = veil_share_rho_merge(sh, data, n)) == -VEIL_EDECODE)
                snprintf(err, sizeof(err), "%s is damaged", path);
        if (!rc) {
                size_t senders;
                double ro = veil_share_others_rho(sh, &senders), eps;
                double total = nextafter(rho_own + ro, INFINITY);
                /* A sender of unknown cost (or one the stage could not
                 * keep) makes the stage's ε infinite: say so, rather than
                 * refuse the ρ as a calculator would. */
                if (isinf(total)) {
                        eps = INFINITY;
                        rc = 0;
                } else {
                        rc = veil_dp_epsilon_sampled(total, delta, draws,
                                                     &eps, err, sizeof(err));
                }
                char e[32], r[32];
                if (!rc)
                        printf("rho_others=%s\nsenders=%zu\n"
                               "epsilon_total=%s\n",
                               loss_text(r, ro), senders, loss_text(e, eps));
        }
        if (rc)
                fprintf(stderr, "dp_model accountant: %s\n", err);
        if (sh)
                veil_share_free(sh);
        free(data);
        free(path);
        return rc ? 1 : 0;
}

/* What a saved accountant holds: for operators and for the restart test. */
static int cmd_accountant(int argc, char **argv) {
        const char *file = NULL, *dv = NULL;
        double delta = 0;
        /* Every argument is read: one this command does not take (the
         * calculator's --windows, a typo) is refused, not skipped. */
        for (int i = 1; i < argc; i += 2) {
                const char *o = argv[i];
                if (strcmp(o, "--file") && strcmp(o, "--delta")) {
                        fprintf(stderr,
                                "dp_model accountant: unknown option %s (it "
                                "takes --file F and --delta D)\n",
                                o);
                        return 2;
                }
                if (i + 1 >= argc) {
                        fprintf(stderr,
                                "dp_model accountant: %s needs a value\n", o);
                        return 2;
                }
                if (o[2] == 'f')
                        file = argv[i + 1];
                else
                        dv = argv[i + 1];
        }
        if (!file || !dv) {
                fprintf(stderr,
                        "dp_model accountant: %s is required\n"
                        "usage: veil dp_model accountant --file F --delta D\n",
                        file ? "--delta" : "--file");
                return 2;
        }
        if (!num(dv, &delta) || !(delta > 0 && delta < 1))
                return bad_real("accountant", "--delta", dv, "in (0, 1)");
        struct veil_dp_mech m = {VEIL_DP_GAUSSIAN, 1, 1, 0, 1, 0};
        struct veil_accountant *acc;
        char err[256];
        double eps;
        if (veil_accountant_new(&acc, &m, err, sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        if (veil_accountant_load(acc, file, err, sizeof(err)) ||
            veil_accountant_epsilon(acc, delta, &eps, err, sizeof(err))) {
                fprintf(stderr, "%s\n", err);
                veil_accountant_free(acc);
                return 1;
        }
        char e[32], r[32], dr[32];
        printf("epsilon=%s\nrho=%s\nsteps=%llu\ndelta=%.6g\n"
               "lineage=%u\ndraws_per_rho=%s\n",
               loss_text(e, eps), loss_text(r, veil_accountant_rho(acc)),
               (unsigned long long)veil_accountant_steps(acc), delta,
               (unsigned)veil_accountant_lineage(acc),
               loss_text(dr, veil_accountant_draws_per_rho(acc)));
        double rho = veil_accountant_rho(acc),
               draws = veil_accountant_draws_per_rho(acc);
        veil_accountant_free(acc);
        return others(file, rho, draws, delta);
}

const struct veil_command veil_dp_model_commands[] = {
        {"epsilon",
         "epsilon [--mechanism gaussian|tree] --noise-multiplier S --delta D "
         "[--participations M] [--windows W] [--steps T] [--restarts R] | "
         "epsilon --rho RHO --delta D [--draws-per-rho N]",
         "ε spent over the horizon: gaussian (the default), M "
         "participations per user in each of W windows (ρ = W·M/(2S²); M "
         "and W default to 1: give M as the stage's max_contributions, "
         "whose default is 4); "
         "tree, R trees of T steps, M "
         "participations per tree (default 1), each level l < ⌈log2(T+1)⌉ "
         "costing M·min(M, 2^l): ρ = R·Σ_l M·min(M, 2^l)/(2S²), "
         "R·⌈log2(T+1)⌉/(2S²) for M = 1; with --rho, the ε of a zCDP ρ "
         "(for instance the sum of several instances' accountants; with "
         "--draws-per-rho, the rate `accountant` prints, the noise "
         "sampler's own error added as the stages add it). All of these "
         "are for an exact sampler unless --draws-per-rho is given: a "
         "stage's ε is higher by about 2^-54 per coordinate draw a user "
         "can move (10^-9 for the retail evaluation's model). An "
         "option of the other mechanism is refused",
         cmd_epsilon},
        {"noise",
         "noise --epsilon E --delta D [--mechanism gaussian|tree] "
         "[--participations M] [--windows W] [--steps T] [--restarts R]",
         "the smallest noise multiplier S that keeps the horizon within E, "
         "at the 9 digits printed: rounded up, so that `epsilon` of the "
         "printed S is within E",
         cmd_noise},
        {"accountant", "accountant --file F --delta D",
         "ε, ρ, releases, lineage (the id its model updates carry) and the "
         "rate of noise draws per unit of ρ a "
         "saved accountant state holds; with the "
         "other instances' ρ kept beside it (FILE.others), theirs and the "
         "total ε the stage reports",
         cmd_accountant},
        {NULL, NULL, NULL, NULL}};
