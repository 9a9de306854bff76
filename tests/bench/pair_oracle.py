#!/usr/bin/env python3
"""Item-to-item transition lists for tests/bench/pair_oracle.sh.

A transition is a customer's purchase followed by their next one (the pair
`veil replay --evaluate` scores a recommendation against), as catalog rows
(a, b), a != b. Each list holds "a b score" lines, best first, up to 64 per
a, the score relative to a's best:

  oracle T OUT          exact: the pairs at least T distinct customers made
  select SIGMA D OUT    user-level private (one release): Gaussian partition
                        selection. Each customer's distinct pairs get weight
                        1/sqrt(n) (L2 norm 1); a pair is released when its
                        weighted count plus N(0, SIGMA^2) exceeds the
                        threshold at which any one customer's pairs appear
                        with probability at most D (union bound)
  domain W SIGMA OUT    user-level private (one release) over a public
                        domain: the pairs at most W catalog rows apart, all
                        of them noised (weights 1/sqrt(n) over each
                        customer's pairs in the domain), no selection

Both private lists are optimistic: one release of the whole year, read by
every recommendation from the first event on (a streaming release would
know less, and later). Standard library only; seeded.
"""
import collections
import csv
import gzip
import math
import random
import sys
from statistics import NormalDist


def load(items, events):
    rows = {}
    with open(items, newline="") as f:
        r = csv.reader(f)
        next(r)
        for i, line in enumerate(r):
            rows[line[0]] = i
    last, pairs = {}, collections.defaultdict(set)
    with gzip.open(events, "rt", newline="") as f:
        r = csv.reader(f)
        head = next(r)
        cu, ci = head.index("user_id"), head.index("item")
        for line in r:
            u, it = line[cu], line[ci]
            a = last.get(u)
            if a is not None and a in rows and it in rows and a != it:
                pairs[u].add((rows[a], rows[it]))
            last[u] = it
    return len(rows), pairs


def write(out, scored):
    by_a = collections.defaultdict(list)
    for (a, b), v in scored:
        by_a[a].append((v, b))
    with open(out, "w") as o:
        for a in sorted(by_a):
            lst = sorted(by_a[a], reverse=True)[:64]
            top = lst[0][0]
            for v, b in lst:
                o.write(f"{a} {b} {v / top:.4f}\n")
    return sum(min(len(v), 64) for v in by_a.values())


def weighted(pairs, keep=lambda p: True):
    s = collections.defaultdict(float)
    for ps in pairs.values():
        ps = [p for p in ps if keep(p)]
        for p in ps:
            s[p] += 1 / math.sqrt(len(ps))
    return s


def main():
    items, events, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    args = sys.argv[4:]
    n, pairs = load(items, events)
    rng = random.Random(1)
    if mode == "oracle":
        t = int(args[0])
        users = collections.Counter(p for ps in pairs.values() for p in ps)
        kept = write(args[1], [(p, c) for p, c in users.items() if c >= t])
        print(f"oracle T={t}: {kept} pairs")
    elif mode == "select":
        sigma, d = float(args[0]), float(args[1])
        nd = NormalDist()
        # A pair only one customer made carries 1/sqrt(n) of their n pairs;
        # the threshold bounds the chance that any of them is released.
        def delta(tau):
            return max(k * (1 - nd.cdf((tau - 1 / math.sqrt(k)) / sigma))
                       for k in range(1, 4000))
        lo, hi = 0.0, 100.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if delta(mid) > d else (lo, mid)
        s = weighted(pairs)
        rel = [(p, v + rng.gauss(0, sigma)) for p, v in s.items()]
        kept = write(args[2], [(p, v) for p, v in rel if v > hi])
        print(f"select sigma={sigma} threshold={hi:.3f}: {kept} pairs")
    elif mode == "domain":
        w, sigma = int(args[0]), float(args[1])
        s = weighted(pairs, lambda p: abs(p[0] - p[1]) <= w)
        noisy = []
        for a in range(n):
            for b in range(max(0, a - w), min(n, a + w + 1)):
                if b != a:
                    v = s.get((a, b), 0.0) + (rng.gauss(0, sigma) if sigma else 0)
                    if v > 0:
                        noisy.append(((a, b), v))
        kept = write(args[2], noisy)
        print(f"domain W={w} sigma={sigma}: {kept} pairs")
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
