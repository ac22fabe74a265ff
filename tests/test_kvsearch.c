/* test_kvsearch.c — the --search-kv knapsack against brute force on small random instances,
 * and its budget edges. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "kvsearch.h"

static const int BITS[3] = {1, 2, 4};

/* Brute force over all 3^(2L) choices. */
static double brute(int L, const double *ek, const double *ev, double budget) {
    int n = 2 * L, total = 1;
    for (int i = 0; i < n; i++) total *= 3;
    double best = INFINITY;
    for (int code = 0; code < total; code++) {
        int c = code, bits = 0;
        double e = 0;
        for (int i = 0; i < n; i++, c /= 3) {
            bits += BITS[c % 3];
            e += (i % 2 ? ev : ek)[(i / 2) * 3 + c % 3];
        }
        if (bits <= budget * n + 1e-9 && e < best) best = e;
    }
    return best;
}

Test(kvsearch, optimal_against_brute_force) {
    unsigned seed = 3;
    for (int rep = 0; rep < 300; rep++) {
        int L = 1 + rand_r(&seed) % 4;
        double ek[12], ev[12];
        for (int l = 0; l < L; l++) /* errors fall with width, K usually worse than V */
            for (int w = 0; w < 3; w++) {
                ek[l * 3 + w] = (rand_r(&seed) % 1000 + 1) / (1000.0 * (1 << (2 * w)));
                ev[l * 3 + w] = (rand_r(&seed) % 1000 + 1) / (3000.0 * (1 << (2 * w)));
            }
        double budget = 1.0 + (rand_r(&seed) % 31) / 10.0;
        kv_config c;
        double got;
        akv_err err = {0};
        cr_assert_eq(kvsearch_solve(L, ek, ev, budget, &c, &got, &err), AKV_OK, "%s", err.msg);
        double want = brute(L, ek, ev, budget);
        cr_expect(fabs(got - want) <= 1e-12, "L %d budget %.1f: %g vs brute %g", L, budget, got, want);
        int bits = 0;
        double e = 0;
        for (int l = 0; l < L; l++) {
            bits += c.k_bits[l] + c.v_bits[l];
            e += ek[l * 3 + (c.k_bits[l] == 1 ? 0 : c.k_bits[l] == 2 ? 1 : 2)];
            e += ev[l * 3 + (c.v_bits[l] == 1 ? 0 : c.v_bits[l] == 2 ? 1 : 2)];
        }
        cr_expect(bits <= budget * 2 * L + 1e-9, "over budget");
        cr_expect(fabs(e - got) < 1e-12, "reported error does not match the choice");
    }
}

Test(kvsearch, budget_edges) {
    double ek[6] = {9, 4, 1, 9, 4, 1}, ev[6] = {1, 0.5, 0.1, 1, 0.5, 0.1};
    kv_config c;
    double t;
    akv_err err = {0};
    cr_assert_eq(kvsearch_solve(2, ek, ev, 1.0, &c, &t, &err), AKV_OK);
    cr_expect(c.k_bits[0] == 1 && c.v_bits[1] == 1);
    cr_assert_eq(kvsearch_solve(2, ek, ev, 4.0, &c, &t, &err), AKV_OK);
    cr_expect(c.k_bits[0] == 4 && c.v_bits[1] == 4);
    cr_assert_eq(kvsearch_solve(2, ek, ev, 1.5, &c, &t, &err), AKV_OK); /* 6 bits: keys get them */
    cr_expect(c.k_bits[0] == 2 && c.k_bits[1] == 2 && c.v_bits[0] == 1 && c.v_bits[1] == 1);
    akv_err e2 = {0};
    cr_expect_eq(kvsearch_solve(2, ek, ev, 0.5, &c, &t, &e2), AKV_EINPUT);
}
