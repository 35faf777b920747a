/* SPDX-License-Identifier: MIT */
/*
 * limits_test.c: the per-address connection counter: the limit, grouping
 * by prefix, the table's capacity and deletion, and the table shared by
 * worker processes that die (with or without the lock).
 */
#include "../../src/serve/ip_limits.h"
#include "addr_util.h"
#include "check.h"

#include <sys/un.h>

static struct serve_limits *
mk(unsigned n, unsigned p4, unsigned p6, size_t capacity, unsigned workers)
{
	struct serve_limits *t = NULL;
	struct serve_limits_opts o = {.max_per_key = n,
	    .prefix4 = p4,
	    .prefix6 = p6,
	    .capacity = capacity,
	    .workers = workers};
	int r = serve_limits_new(&t, &o);
	if (r != 0)
		CHECK_FAILED("serve_limits_new: %d", r);
	return t;
}

static struct pbx_addr
v4(const char *ip)
{
	return mkaddr(AF_INET, ip, 4000);
}

static struct pbx_addr
v6(const char *ip)
{
	return mkaddr(AF_INET6, ip, 4000);
}

static int
take4(struct serve_limits *t, const char *ip)
{
	struct pbx_addr a = v4(ip);
	return serve_limits_take(t, 0, &a);
}

static int
take6(struct serve_limits *t, const char *ip)
{
	struct pbx_addr a = v6(ip);
	return serve_limits_take(t, 0, &a);
}

static unsigned
count4(struct serve_limits *t, const char *ip)
{
	struct pbx_addr a = v4(ip);
	return serve_limits_count(t, &a);
}

static unsigned
count6(struct serve_limits *t, const char *ip)
{
	struct pbx_addr a = v6(ip);
	return serve_limits_count(t, &a);
}

static size_t
keys(struct serve_limits *t)
{
	struct serve_limits_stats st;
	serve_limits_stats(t, &st);
	CHECK_EQ(st.broken, 0);
	return st.keys;
}

/* Reap pid; its exit status, or 128 + the signal that killed it. */
static int
reap(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* ---- one process ---- */

static void
test_limits_take_counts_to_n_then_busy(void)
{
	struct serve_limits *t = mk(3, 32, 128, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "192.0.2.1"), 1);
	CHECK_EQ(take4(t, "192.0.2.1"), 2);
	CHECK_EQ(take4(t, "192.0.2.1"), 3);
	CHECK_EQ(take4(t, "192.0.2.1"), -EBUSY);
	CHECK_EQ(take4(t, "192.0.2.1"), -EBUSY);
	CHECK_EQ(count4(t, "192.0.2.1"), 3);
	CHECK_EQ(take4(t, "192.0.2.2"), 1);
	CHECK_EQ(count4(t, "192.0.2.9"), 0);
	serve_limits_free(t);
}

static void
test_limits_give_frees_a_slot(void)
{
	struct serve_limits *t = mk(2, 32, 128, 16, 0);
	struct pbx_addr a = v6("2001:db8::7");
	REQUIRE(t != NULL);
	CHECK_EQ(serve_limits_take(t, 0, &a), 1);
	CHECK_EQ(serve_limits_take(t, 0, &a), 2);
	CHECK_EQ(serve_limits_take(t, 0, &a), -EBUSY);
	serve_limits_give(t, 0, &a);
	CHECK_EQ(serve_limits_count(t, &a), 1);
	CHECK_EQ(serve_limits_take(t, 0, &a), 2);
	serve_limits_give(t, 0, &a);
	serve_limits_give(t, 0, &a);
	CHECK_EQ(serve_limits_count(t, &a), 0);
	CHECK_EQ(keys(t), 0);
	CHECK_EQ(serve_limits_take(t, 0, &a), 1);
	serve_limits_free(t);
}

static void
test_limits_default_counts_each_address(void)
{
	struct serve_limits *t = mk(10, 32, 128, 16, 0);
	REQUIRE(t != NULL);
	struct pbx_addr p1 = mkaddr(AF_INET, "192.0.2.1", 1);
	struct pbx_addr p2 = mkaddr(AF_INET, "192.0.2.1", 2);
	CHECK_EQ(serve_limits_take(t, 0, &p1), 1);
	CHECK_EQ(serve_limits_take(t, 0, &p2), 2); /* the port is not counted */
	CHECK_EQ(take4(t, "192.0.2.0"), 1);
	CHECK_EQ(take4(t, "192.0.2.2"), 1);
	CHECK_EQ(take6(t, "2001:db8::1"), 1);
	CHECK_EQ(take6(t, "2001:db8::1"), 2);
	CHECK_EQ(take6(t, "2001:db8::1:0:0:1"), 1);
	CHECK_EQ(take6(t, "2001:db8::"), 1);
	CHECK_EQ(keys(t), 6);
	serve_limits_free(t);
}

static void
test_limits_prefix4_groups_networks(void)
{
	struct serve_limits *t = mk(10, 24, 128, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "192.0.2.1"), 1);
	CHECK_EQ(take4(t, "192.0.2.254"), 2);
	CHECK_EQ(take4(t, "192.0.2.0"), 3);
	CHECK_EQ(take4(t, "192.0.3.1"), 1);
	CHECK_EQ(take4(t, "193.0.2.1"), 1);
	CHECK_EQ(count4(t, "192.0.2.77"), 3);
	serve_limits_free(t);

	/* A prefix that is not a whole byte: 10.0.0.0/20 is .0.0 to .15.255 */
	t = mk(10, 20, 128, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "10.0.0.1"), 1);
	CHECK_EQ(take4(t, "10.0.15.255"), 2);
	CHECK_EQ(take4(t, "10.0.16.0"), 1);
	CHECK_EQ(take4(t, "10.0.31.255"), 2);
	CHECK_EQ(take4(t, "10.1.0.1"), 1);
	serve_limits_free(t);

	/* /31: pairs of addresses */
	t = mk(10, 31, 128, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "198.51.100.6"), 1);
	CHECK_EQ(take4(t, "198.51.100.7"), 2);
	CHECK_EQ(take4(t, "198.51.100.8"), 1);
	serve_limits_free(t);
}

static void
test_limits_prefix6_groups_networks(void)
{
	struct serve_limits *t = mk(10, 32, 64, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take6(t, "2001:db8:0:1::1"), 1);
	CHECK_EQ(take6(t, "2001:db8:0:1:ffff:ffff:ffff:ffff"), 2);
	CHECK_EQ(take6(t, "2001:db8:0:1:8000::"), 3);
	CHECK_EQ(take6(t, "2001:db8:0:2::1"), 1);
	CHECK_EQ(take6(t, "2001:db9:0:1::1"), 1);
	/* IPv4 stays per address */
	CHECK_EQ(take4(t, "192.0.2.1"), 1);
	CHECK_EQ(take4(t, "192.0.2.2"), 1);
	serve_limits_free(t);

	/* /60: 2001:db8:0:10:: to 2001:db8:0:1f:ffff:ffff:ffff:ffff */
	t = mk(10, 32, 60, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take6(t, "2001:db8:0:10::"), 1);
	CHECK_EQ(take6(t, "2001:db8:0:1f:ffff::1"), 2);
	CHECK_EQ(take6(t, "2001:db8:0:20::"), 1);
	CHECK_EQ(take6(t, "2001:db8:0:f::"), 1);
	serve_limits_free(t);

	/* /127: the last bit only */
	t = mk(10, 32, 127, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take6(t, "2001:db8::4"), 1);
	CHECK_EQ(take6(t, "2001:db8::5"), 2);
	CHECK_EQ(take6(t, "2001:db8::6"), 1);
	serve_limits_free(t);
}

static void
test_limits_v4_mapped_is_v4(void)
{
	struct serve_limits *t = mk(10, 32, 128, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "192.0.2.1"), 1);
	CHECK_EQ(take6(t, "::ffff:192.0.2.1"), 2);
	CHECK_EQ(count4(t, "192.0.2.1"), 2);
	CHECK_EQ(count6(t, "::ffff:192.0.2.1"), 2);
	struct pbx_addr m = v6("::ffff:192.0.2.1");
	serve_limits_give(t, 0, &m);
	CHECK_EQ(count4(t, "192.0.2.1"), 1);
	CHECK_EQ(keys(t), 1);
	serve_limits_free(t);

	/* The IPv4 prefix applies to a mapped address, not the IPv6 one. */
	t = mk(10, 24, 0, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "192.0.2.1"), 1);
	CHECK_EQ(take6(t, "::ffff:192.0.2.99"), 2);
	CHECK_EQ(take6(t, "::ffff:192.0.3.1"), 1);
	CHECK_EQ(take6(t, "2001:db8::1"), 1);
	CHECK_EQ(take6(t, "::1"), 2);
	serve_limits_free(t);
}

static void
test_limits_families_are_distinct(void)
{
	struct serve_limits *t = mk(10, 32, 128, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "192.0.2.1"), 1);
	/* IPv4-compatible (deprecated), and NAT64: IPv6, not IPv4 */
	CHECK_EQ(take6(t, "::192.0.2.1"), 1);
	CHECK_EQ(take6(t, "64:ff9b::192.0.2.1"), 1);
	/* Neighbours of ::ffff:0:0/96 are IPv6. */
	CHECK_EQ(take6(t, "::ff:192.0.2.1"), 1);
	CHECK_EQ(take6(t, "::fffe:192.0.2.1"), 1);
	CHECK_EQ(take6(t, "::1:ffff:192.0.2.1"), 1);
	CHECK_EQ(take6(t, "::ffff:0:192.0.2.1"), 1);
	CHECK_EQ(count4(t, "192.0.2.1"), 1);
	CHECK_EQ(take4(t, "0.0.0.0"), 1);
	CHECK_EQ(take6(t, "::"), 1);
	serve_limits_free(t);

	/* Masked below 96 bits, no IPv6 key looks like a mapped one. */
	t = mk(10, 32, 80, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "192.0.2.1"), 1);
	CHECK_EQ(take6(t, "::fffe:c000:201"), 1);
	CHECK_EQ(take6(t, "::1"), 2);
	CHECK_EQ(take6(t, "::ffff:192.0.2.1"), 2);
	serve_limits_free(t);
}

static void
test_limits_prefix_zero_one_key_per_family(void)
{
	struct serve_limits *t = mk(3, 0, 0, 16, 0);
	REQUIRE(t != NULL);
	CHECK_EQ(take4(t, "1.2.3.4"), 1);
	CHECK_EQ(take4(t, "200.1.1.1"), 2);
	CHECK_EQ(take4(t, "10.0.0.1"), 3);
	CHECK_EQ(take4(t, "192.0.2.7"), -EBUSY);
	CHECK_EQ(take6(t, "::ffff:8.8.8.8"), -EBUSY);
	CHECK_EQ(take6(t, "2001:db8::1"), 1);
	CHECK_EQ(take6(t, "fe80::1"), 2);
	CHECK_EQ(take6(t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 3);
	CHECK_EQ(take6(t, "::"), -EBUSY);
	CHECK_EQ(count4(t, "255.255.255.255"), 3);
	CHECK_EQ(keys(t), 2);
	serve_limits_free(t);
}

static void
test_limits_rejects_bad_options(void)
{
	static const struct serve_limits_opts bad[] = {
	    {.max_per_key = 0, .prefix4 = 32, .prefix6 = 128, .capacity = 8},
	    {.max_per_key = (1u << 20),
		.prefix4 = 32,
		.prefix6 = 128,
		.capacity = 8},
	    {.max_per_key = 1, .prefix4 = 33, .prefix6 = 128, .capacity = 8},
	    {.max_per_key = 1, .prefix4 = 32, .prefix6 = 129, .capacity = 8},
	    {.max_per_key = 1, .prefix4 = 32, .prefix6 = 128, .capacity = 0},
	    {.max_per_key = 1,
		.prefix4 = 32,
		.prefix6 = 128,
		.capacity = ((size_t)1 << 30) + 1},
	    {.max_per_key = 1,
		.prefix4 = 32,
		.prefix6 = 128,
		.capacity = 8,
		.workers = 4097},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct serve_limits *t = NULL;
		CHECK_EQ(serve_limits_new(&t, &bad[i]), -EINVAL);
		CHECK(t == NULL);
	}
	/* The bounds themselves are accepted. */
	static const struct serve_limits_opts good[] = {
	    {.max_per_key = 1048575,
		.prefix4 = 32,
		.prefix6 = 128,
		.capacity = 1},
	    {.max_per_key = 1, .capacity = 1, .workers = 4096},
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		struct serve_limits *t = NULL;
		CHECK_EQ(serve_limits_new(&t, &good[i]), 0);
		serve_limits_free(t);
	}
}

static void
test_limits_rejects_bad_calls(void)
{
	struct serve_limits *t = mk(5, 32, 128, 16, 0);
	REQUIRE(t != NULL);
	struct pbx_addr a = v4("192.0.2.1");
	CHECK_EQ(serve_limits_take(t, 1, &a), -EINVAL);
	struct pbx_addr none;
	memset(&none, 0, sizeof none);
	CHECK_EQ(serve_limits_take(t, 0, &none), -EAFNOSUPPORT);
	struct pbx_addr un;
	memset(&un, 0, sizeof un);
	un.u.sa.sa_family = AF_UNIX;
	un.len = sizeof(sa_family_t);
	CHECK_EQ(serve_limits_take(t, 0, &un), -EAFNOSUPPORT);
	CHECK_EQ(serve_limits_count(t, &un), 0);
	serve_limits_give(t, 0, &un);
	CHECK_EQ(keys(t), 0);
	serve_limits_free(t);

	t = mk(5, 32, 128, 16, 2);
	REQUIRE(t != NULL);
	CHECK_EQ(serve_limits_take(t, 1, &a), 1);
	CHECK_EQ(serve_limits_take(t, 2, &a), -EINVAL);
	serve_limits_give(t, 2, &a);
	serve_limits_forget_worker(t, 2);
	CHECK_EQ(serve_limits_count(t, &a), 1);
	serve_limits_free(t);
}

static void
test_limits_give_without_take_is_ignored(void)
{
	struct serve_limits *t = mk(5, 32, 128, 16, 2);
	REQUIRE(t != NULL);
	struct pbx_addr a = v4("192.0.2.1"), b = v4("192.0.2.2");
	serve_limits_give(t, 0, &a);
	CHECK_EQ(keys(t), 0);
	CHECK_EQ(serve_limits_take(t, 0, &a), 1);
	CHECK_EQ(serve_limits_take(t, 0, &a), 2);
	/* Worker 1 holds nothing of a: its give cannot lower worker 0's. */
	serve_limits_give(t, 1, &a);
	CHECK_EQ(serve_limits_count(t, &a), 2);
	serve_limits_give(t, 0, &b);
	CHECK_EQ(serve_limits_count(t, &a), 2);
	CHECK_EQ(keys(t), 1);
	serve_limits_free(t);
}

/* 10.0.x.y for even i, 2001:db8::i for odd: both families, low bits. */
static struct pbx_addr
nth(unsigned i)
{
	char ip[64];
	if (i % 2 == 0) {
		snprintf(ip, sizeof ip, "10.%u.%u.%u", (i >> 16) & 255,
		    (i >> 8) & 255, i & 255);
		return v4(ip);
	}
	snprintf(ip, sizeof ip, "2001:db8::%x:%x", i >> 16, i & 0xffff);
	return v6(ip);
}

static void
test_limits_capacity_fill_then_empty(void)
{
	enum { CAP = 1000 };
	struct serve_limits *t = mk(2, 32, 128, CAP, 0);
	REQUIRE(t != NULL);
	struct serve_limits_stats st;
	serve_limits_stats(t, &st);
	CHECK_EQ(st.slots, 2048); /* the power of two >= 2 * 1000 */
	int bad = 0;
	for (unsigned i = 0; i < CAP; i++) {
		struct pbx_addr a = nth(i);
		bad += serve_limits_take(t, 0, &a) != 1;
	}
	CHECK_EQ(bad, 0);
	struct pbx_addr more = nth(CAP), first = nth(0);
	CHECK_EQ(serve_limits_take(t, 0, &more), -ENOSPC);
	CHECK_EQ(serve_limits_count(t, &more), 0);
	CHECK_EQ(serve_limits_take(t, 0, &first), 2); /* no new key */
	serve_limits_give(t, 0, &first);
	serve_limits_stats(t, &st);
	CHECK_EQ(st.keys, CAP);
	CHECK_EQ(st.broken, 0);
	for (unsigned i = 0; i < CAP; i++) {
		struct pbx_addr a = nth(i);
		serve_limits_give(t, 0, &a);
	}
	for (unsigned i = 0; i <= CAP; i++) {
		struct pbx_addr a = nth(i);
		bad += serve_limits_count(t, &a) != 0;
	}
	CHECK_EQ(bad, 0);
	serve_limits_stats(t, &st);
	CHECK_EQ(st.keys, 0);
	CHECK_EQ(st.broken, 0);
	CHECK_EQ(serve_limits_take(t, 0, &more), 1);
	serve_limits_free(t);

	/* Sizes: twice the capacity, rounded up to a power of two. */
	static const size_t cap[] = {1, 2, 3, 8, 9};
	static const size_t slots[] = {2, 4, 8, 16, 32};
	for (size_t i = 0; i < sizeof cap / sizeof cap[0]; i++) {
		t = mk(1, 32, 128, cap[i], 0);
		REQUIRE(t != NULL);
		serve_limits_stats(t, &st);
		CHECK_EQ(st.slots, slots[i]);
		serve_limits_free(t);
	}
}

/*
 * A window of LIVE keys slides over a ring of RING addresses for a
 * million take/give cycles: every key in the window is counted once, none
 * outside it, and the probes stay short (a tombstone table would fill).
 */
static void
test_limits_million_cycles_stay_correct(void)
{
	enum { LIVE = 1000, RING = 5003, CYCLES = 1000000 };
	struct serve_limits *t = mk(3, 32, 128, 1024, 0);
	REQUIRE(t != NULL);
	struct pbx_addr *ring = calloc(RING, sizeof *ring);
	REQUIRE(ring != NULL);
	for (unsigned i = 0; i < RING; i++)
		ring[i] = nth(i);
	int bad_take = 0;
	for (unsigned i = 0; i < LIVE; i++)
		bad_take += serve_limits_take(t, 0, &ring[i]) != 1;
	size_t longest = 0;
	for (unsigned c = 0; c < CYCLES; c++) {
		serve_limits_give(t, 0, &ring[c % RING]);
		bad_take +=
		    serve_limits_take(t, 0, &ring[(c + LIVE) % RING]) != 1;
		if (c % 50000 != 0)
			continue;
		struct serve_limits_stats st;
		serve_limits_stats(t, &st);
		CHECK_EQ(st.keys, LIVE);
		CHECK_EQ(st.broken, 0);
		CHECK_EQ(st.idle, 0);
		longest = st.longest > longest ? st.longest : longest;
	}
	CHECK_EQ(bad_take, 0);
	/* At a load under 0.5 and with a decent hash, a probe of 40 has odds
	 * far below 1e-9; consecutive addresses must not cluster. */
	CHECK(longest < 40);
	unsigned start = CYCLES % RING, wrong = 0;
	for (unsigned i = 0; i < RING; i++) {
		unsigned off = (i + RING - start) % RING;
		wrong += serve_limits_count(t, &ring[i]) != (off < LIVE);
	}
	CHECK_EQ(wrong, 0);
	for (unsigned i = 0; i < LIVE; i++)
		serve_limits_give(t, 0, &ring[(start + i) % RING]);
	CHECK_EQ(keys(t), 0);
	free(ring);
	serve_limits_free(t);
}

/* ---- shared by workers ---- */

static void
test_limits_shared_sums_workers(void)
{
	struct serve_limits *t = mk(3, 32, 128, 16, 3);
	REQUIRE(t != NULL);
	struct pbx_addr a = v4("192.0.2.1");
	CHECK_EQ(serve_limits_take(t, 0, &a), 1);
	CHECK_EQ(serve_limits_take(t, 1, &a), 2);
	CHECK_EQ(serve_limits_take(t, 2, &a), 3);
	CHECK_EQ(serve_limits_take(t, 0, &a), -EBUSY);
	serve_limits_give(t, 1, &a);
	CHECK_EQ(serve_limits_take(t, 0, &a), 3);
	serve_limits_forget_worker(t, 0);
	CHECK_EQ(serve_limits_count(t, &a), 1);
	serve_limits_forget_worker(t, 2);
	CHECK_EQ(serve_limits_count(t, &a), 0);
	CHECK_EQ(keys(t), 0);
	serve_limits_free(t);
}

/* With 8 workers and N = 2 an entry has 2 pairs: they are reused. */
static void
test_limits_fewer_pairs_than_workers(void)
{
	struct serve_limits *t = mk(2, 32, 128, 16, 8);
	REQUIRE(t != NULL);
	struct pbx_addr a = v4("192.0.2.1"), b = v6("2001:db8::b");
	CHECK_EQ(serve_limits_take(t, 5, &a), 1);
	CHECK_EQ(serve_limits_take(t, 7, &a), 2);
	CHECK_EQ(serve_limits_take(t, 0, &a), -EBUSY);
	serve_limits_give(t, 5, &a);
	CHECK_EQ(serve_limits_take(t, 0, &a), 2);
	serve_limits_give(t, 5, &a); /* holds none now */
	CHECK_EQ(serve_limits_count(t, &a), 2);
	serve_limits_forget_worker(t, 7);
	CHECK_EQ(serve_limits_count(t, &a), 1);
	serve_limits_forget_worker(t, 0);
	CHECK_EQ(serve_limits_count(t, &a), 0);
	CHECK_EQ(serve_limits_take(t, 6, &b), 1);
	CHECK_EQ(serve_limits_take(t, 6, &b), 2);
	CHECK_EQ(serve_limits_take(t, 3, &b), -EBUSY);
	serve_limits_give(t, 6, &b);
	CHECK_EQ(serve_limits_take(t, 3, &b), 2);
	serve_limits_forget_worker(t, 6);
	CHECK_EQ(serve_limits_count(t, &b), 1);
	CHECK_EQ(keys(t), 1);
	serve_limits_free(t);
}

/*
 * Two workers take and give 100,000 times each, at once, on 16 keys (4 of
 * them also reached as IPv4-mapped) in a table of 32 slots: with N = 2
 * and few held, keys are inserted and removed all the time, so writes
 * without the lock lose entries (caught in 20 runs out of 20).
 */
enum { NADDRS = 20, ROUNDS = 100000, SHARED_N = 2 };

static int
churn(
    struct serve_limits *t, unsigned w, const struct pbx_addr *addrs, int gate)
{
	unsigned held[NADDRS] = {0}, seed = 12345 + w;
	int errors = 0;
	char ch;

	if (read(gate, &ch, 1) != 0) /* both start when the gate closes */
		return 2;
	for (int i = 0; i < ROUNDS; i++) {
		unsigned k = (unsigned)rand_r(&seed) % NADDRS;
		int r = serve_limits_take(t, w, &addrs[k]);
		if (r > 0 && r <= SHARED_N)
			held[k]++;
		else if (r != -EBUSY)
			errors++;
		if (r > 0 && (unsigned)r < held[k])
			errors++; /* fewer than this worker alone holds */
		k = (unsigned)rand_r(&seed) % NADDRS;
		if (held[k] > 0) {
			serve_limits_give(t, w, &addrs[k]);
			held[k]--;
		}
		if (serve_limits_count(t, &addrs[k]) < held[k])
			errors++; /* this worker's count was lost */
	}
	for (unsigned k = 0; k < NADDRS; k++)
		for (; held[k] > 0; held[k]--)
			serve_limits_give(t, w, &addrs[k]);
	return errors == 0 ? 0 : 1;
}

static void
test_limits_shared_children_churn(void)
{
	struct serve_limits *t = mk(SHARED_N, 32, 128, 16, 2);
	REQUIRE(t != NULL);
	struct pbx_addr addrs[NADDRS];
	for (unsigned k = 0; k < 16; k++)
		addrs[k] = nth(k);
	for (unsigned k = 16; k < NADDRS; k++) { /* = nth(0), nth(2), ... */
		char ip[32];
		snprintf(ip, sizeof ip, "::ffff:10.0.0.%u", 2 * (k - 16));
		addrs[k] = v6(ip);
	}
	int gate[2];
	REQUIRE(pipe(gate) == 0);
	pid_t pid[2];
	for (unsigned w = 0; w < 2; w++) {
		pid[w] = fork();
		if (pid[w] == 0) {
			close(gate[1]);
			_exit(churn(t, w, addrs, gate[0]));
		}
		REQUIRE(pid[w] > 0);
	}
	close(gate[0]);
	close(gate[1]);
	CHECK_EQ(reap(pid[0]), 0);
	CHECK_EQ(reap(pid[1]), 0);
	struct serve_limits_stats st;
	serve_limits_stats(t, &st);
	CHECK_EQ(st.keys, 0);
	CHECK_EQ(st.broken, 0);
	CHECK_EQ(st.repairs, 0);
	int wrong = 0;
	for (unsigned k = 0; k < NADDRS; k++)
		wrong += serve_limits_count(t, &addrs[k]) != 0;
	CHECK_EQ(wrong, 0);
	serve_limits_free(t);
}

static void
test_limits_forget_worker_after_exit(void)
{
	struct serve_limits *t = mk(10, 32, 128, 64, 2);
	REQUIRE(t != NULL);
	struct pbx_addr a = v4("192.0.2.1"), b = v4("192.0.2.2"),
			c = v6("2001:db8::c"), d = v6("2001:db8::d");
	CHECK_EQ(serve_limits_take(t, 0, &a), 1);
	CHECK_EQ(serve_limits_take(t, 0, &a), 2);
	CHECK_EQ(serve_limits_take(t, 0, &b), 1);
	pid_t pid = fork();
	if (pid == 0) {
		int bad = serve_limits_take(t, 1, &a) != 3;
		bad += serve_limits_take(t, 1, &a) != 4;
		bad += serve_limits_take(t, 1, &a) != 5;
		bad += serve_limits_take(t, 1, &c) != 1;
		bad += serve_limits_take(t, 1, &c) != 2;
		bad += serve_limits_take(t, 1, &d) != 1;
		_exit(bad); /* without giving anything back */
	}
	REQUIRE(pid > 0);
	CHECK_EQ(reap(pid), 0);
	CHECK_EQ(serve_limits_count(t, &a), 5);
	CHECK_EQ(serve_limits_count(t, &c), 2);
	CHECK_EQ(keys(t), 4);
	serve_limits_forget_worker(t, 1);
	CHECK_EQ(serve_limits_count(t, &a), 2);
	CHECK_EQ(serve_limits_count(t, &b), 1);
	CHECK_EQ(serve_limits_count(t, &c), 0);
	CHECK_EQ(serve_limits_count(t, &d), 0);
	CHECK_EQ(keys(t), 2);
	serve_limits_forget_worker(t, 1);
	CHECK_EQ(serve_limits_count(t, &a), 2);
	CHECK_EQ(keys(t), 2);
	/* The replacement worker 1 starts from nothing. */
	CHECK_EQ(serve_limits_take(t, 1, &c), 1);
	serve_limits_free(t);
}

static void
test_limits_forget_worker_after_sigkill(void)
{
	struct serve_limits *t = mk(1000, 32, 128, 64, 2);
	REQUIRE(t != NULL);
	struct pbx_addr a = v4("192.0.2.1"), b = v6("2001:db8::b"),
			c = v4("192.0.2.3");
	CHECK_EQ(serve_limits_take(t, 0, &a), 1);
	CHECK_EQ(serve_limits_take(t, 0, &b), 1);
	int p[2];
	REQUIRE(pipe(p) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		serve_limits_take(t, 1, &a);
		serve_limits_take(t, 1, &c);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		for (;;) { /* until killed, at any point, maybe locked */
			serve_limits_take(t, 1, &b);
			serve_limits_take(t, 1, &c);
			serve_limits_give(t, 1, &b);
			serve_limits_give(t, 1, &c);
		}
	}
	close(p[1]);
	REQUIRE(pid > 0);
	char ch;
	CHECK_EQ(read(p[0], &ch, 1), 1);
	close(p[0]);
	kill(pid, SIGKILL);
	CHECK_EQ(reap(pid), 128 + SIGKILL);
	serve_limits_forget_worker(t, 1);
	CHECK_EQ(serve_limits_count(t, &a), 1);
	CHECK_EQ(serve_limits_count(t, &b), 1);
	CHECK_EQ(serve_limits_count(t, &c), 0);
	struct serve_limits_stats st;
	serve_limits_stats(t, &st);
	CHECK_EQ(st.keys, 2);
	CHECK_EQ(st.broken, 0);
	CHECK_EQ(st.idle, 0);
	serve_limits_free(t);
}

/*
 * A worker dies with the lock held at its k-th step, for every k until
 * it finishes: the next lock owner repairs, forget_worker drops the dead
 * one's counts, and worker 0's counts are exact every time. The table is
 * rebuilt the same way before each k (same seed, same order: the same
 * layout), with worker 1's keys (X) inserted before worker 0's, so that
 * removing them shifts worker 0's entries back (MOVE, SHIFTED).
 */
enum { W0_KEYS = 36, X_KEYS = 28, Z_KEYS = 8, DEAD_CAP = 64 };
enum { ALL_KEYS = W0_KEYS + X_KEYS + Z_KEYS };
#define X(i) (W0_KEYS + (i))
#define Z(i) (W0_KEYS + X_KEYS + (i))

static int hook_left;

static void
die_at_step(void *arg, enum serve_limits_step s)
{
	(void)arg;
	if (--hook_left == 0)
		_exit(10 + (int)s);
}

/* Empty the table, then: X as worker 1, worker 0's keys, shared ones. */
static void
dead_setup(struct serve_limits *t, const struct pbx_addr *addrs)
{
	serve_limits_forget_worker(t, 0);
	serve_limits_forget_worker(t, 1);
	CHECK_EQ(keys(t), 0);
	for (unsigned i = 0; i < X_KEYS; i++)
		serve_limits_take(t, 1, &addrs[X(i)]);
	for (unsigned i = 0; i < W0_KEYS; i++)
		for (unsigned n = 0; n < 1 + i % 2; n++)
			serve_limits_take(t, 0, &addrs[i]);
	for (unsigned i = 0; i < W0_KEYS; i += 3)
		serve_limits_take(t, 1, &addrs[i]);
}

/* Worker 1: give all it holds, then insert and remove keys of its own. */
static void
dead_child(struct serve_limits *t, const struct pbx_addr *addrs, int k)
{
	hook_left = k;
	serve_limits_set_hook(t, die_at_step, NULL);
	for (unsigned i = 0; i < X_KEYS; i++)
		serve_limits_give(t, 1, &addrs[X(i)]);
	for (unsigned i = 0; i < W0_KEYS; i += 3)
		serve_limits_give(t, 1, &addrs[i]);
	for (unsigned i = 0; i < Z_KEYS; i++) {
		serve_limits_take(t, 1, &addrs[Z(i)]);
		serve_limits_take(t, 1, &addrs[Z(i)]);
		serve_limits_take(t, 1, &addrs[i]);
	}
	for (unsigned i = 0; i < Z_KEYS; i++) {
		serve_limits_give(t, 1, &addrs[i]);
		serve_limits_give(t, 1, &addrs[Z(i)]);
		serve_limits_give(t, 1, &addrs[Z(i)]);
	}
	_exit(0);
}

/* After forget_worker(1): worker 0's counts only, and nothing else. */
static bool
dead_check(struct serve_limits *t, const struct pbx_addr *addrs,
    unsigned crashes, int k)
{
	struct serve_limits_stats s;
	serve_limits_stats(t, &s);
	CHECK_EQ(s.repairs, crashes);
	CHECK_EQ(s.broken, 0);
	CHECK_EQ(s.idle, 0);
	CHECK_EQ(s.keys, W0_KEYS);
	int wrong = 0;
	for (unsigned i = 0; i < ALL_KEYS; i++) {
		unsigned want = i < W0_KEYS ? 1 + i % 2 : 0;
		wrong += serve_limits_count(t, &addrs[i]) != want;
	}
	if (wrong != 0)
		CHECK_FAILED("after a death at step %d: %d wrong", k, wrong);
	return wrong == 0 && s.broken == 0 && s.keys == W0_KEYS;
}

/* Every k: set up, die at k, repair and check. The steps it died at. */
static unsigned
die_at_every_step(struct serve_limits *t, const struct pbx_addr *addrs)
{
	unsigned seen = 0, crashes = 0;
	for (int k = 1; k < 100000; k++) {
		dead_setup(t, addrs);
		pid_t pid = fork();
		if (pid == 0)
			dead_child(t, addrs, k);
		if (pid < 0)
			return 0;
		int st = reap(pid);
		if (st == 0)
			return k > 100 ? seen : 0;
		if (st < 10 || st > 10 + SERVE_LIMITS_DELETED) {
			CHECK_FAILED("worker 1 ended with status %d", st);
			return 0;
		}
		seen |= 1u << (st - 10);
		crashes++;
		serve_limits_forget_worker(t, 1);
		if (!dead_check(t, addrs, crashes, k))
			return 0;
	}
	return 0;
}

static void
test_limits_dead_owner_repaired_at_every_step(void)
{
	struct pbx_addr addrs[ALL_KEYS];
	for (unsigned i = 0; i < ALL_KEYS; i++)
		addrs[i] = nth(i);
	unsigned all = (1u << (SERVE_LIMITS_DELETED + 1)) - 1, seen = 0;
	/* A layout where no entry of worker 0 ever moves has odds of about
	 * 1e-4 (it depends on the seed): then try another table. */
	for (int tries = 0; tries < 5 && seen != all; tries++) {
		struct serve_limits *t = mk(3, 32, 128, DEAD_CAP, 2);
		REQUIRE(t != NULL);
		seen = die_at_every_step(t, addrs);
		serve_limits_free(t);
		REQUIRE(check_failures == 0);
	}
	CHECK_EQ(seen, all);
}

CHECK_MAIN(TEST(test_limits_take_counts_to_n_then_busy),
    TEST(test_limits_give_frees_a_slot),
    TEST(test_limits_default_counts_each_address),
    TEST(test_limits_prefix4_groups_networks),
    TEST(test_limits_prefix6_groups_networks),
    TEST(test_limits_v4_mapped_is_v4), TEST(test_limits_families_are_distinct),
    TEST(test_limits_prefix_zero_one_key_per_family),
    TEST(test_limits_rejects_bad_options), TEST(test_limits_rejects_bad_calls),
    TEST(test_limits_give_without_take_is_ignored),
    TEST(test_limits_capacity_fill_then_empty),
    TEST(test_limits_million_cycles_stay_correct),
    TEST(test_limits_shared_sums_workers),
    TEST(test_limits_fewer_pairs_than_workers),
    TEST(test_limits_shared_children_churn),
    TEST(test_limits_forget_worker_after_exit),
    TEST(test_limits_forget_worker_after_sigkill),
    TEST(test_limits_dead_owner_repaired_at_every_step))
