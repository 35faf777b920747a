/* SPDX-License-Identifier: MIT */
/*
 * ip_limits.c: live connections per client address or network, in a table
 * of fixed size that one process or all the workers count into.
 *
 * The table is open addressing with linear probing, at most half full,
 * with backward-shift deletion: a removal moves the entries after it back
 * instead of leaving a tombstone, so millions of connections come and go
 * without the probes growing and without a rebuild.
 *
 * A slot is 5 + P words of 32 bits: the key (16 bytes), the slot's home
 * plus one (0: empty; kept so a shift need not hash again), and P "pair"
 * words, each naming a worker (high 12 bits) and its count of the key (low
 * 20 bits; count 0 is a free pair). A key is held by at most N workers
 * (each holds at least one of its N connections), so P = min(workers, N):
 * with --max-per-ip 10 and 64 workers a slot is 60 bytes, not the 276 of a
 * counter per worker. The total is the sum of the pairs. A dead worker's
 * counts are its pairs, which forget_worker clears.
 *
 * The workers share the table under a process-shared robust mutex, not
 * lock-free atomics: an insert and a shift write several words (key, home,
 * pairs) that no single atomic covers, and a lock-free table would need
 * tombstones and a stop-the-world rebuild instead. Uncontended, the lock
 * and unlock cost about 20 ns (no system call); the lock is held for a
 * probe of a slot or two, so at 60,000 connections per second it is busy
 * well under 1% of the time.
 *
 * A process can die holding the lock (a crash, kill -9). The next to take
 * it gets EOWNERDEAD and repairs the table before going on, which works
 * because every write is ordered so that the table is consistent between
 * any two of them, up to what the repair finishes:
 * - an insert writes the entry and only then its home word (the commit);
 * - a count changes by one word; a key left at 0 by a death before its
 *   removal is only idle, and forget_worker of the dead one removes it;
 * - a removal first records its hole in the journal word, and moves the
 *   journal along with the hole after each entry it copies back; the
 *   repair just continues the shift from the journal's hole, since
 *   restarting a backward shift from its current hole redoes nothing
 *   wrong (the entries already passed stay put again);
 * - the key count is recounted by the repair.
 * A dead worker's own counts may be off by its last change; they are
 * dropped by forget_worker anyway. The other workers' counts never are:
 * a pair is changed only by the worker it names (or claimed while free,
 * in one word), except by whole-slot copies, which the journal covers.
 */
#include "ip_limits.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define KEY_WORDS 4
#define HOME_WORD 4
#define PAIR_WORD 5
#define COUNT_BITS 20
#define COUNT_MASK ((1u << COUNT_BITS) - 1)
#define NO_HOLE UINT32_MAX

/* The start of the mapping; the slots follow on their own cache line. */
struct shared {
	pthread_mutex_t lock; /* shared mode only */
	uint32_t hole;        /* the journal: a removal's hole, or NO_HOLE */
	uint32_t keys;        /* entries in use */
	uint32_t repairs;     /* dead owners found */
};
#define SLOTS_OFFSET ((sizeof(struct shared) + 63) & ~(size_t)63)

struct serve_limits {
	struct shared *sh; /* owned: the mapping (map_size bytes) */
	uint32_t *slots;   /* in the mapping, after sh */
	size_t map_size;
	size_t mask;     /* slots - 1 */
	size_t capacity; /* at most this many keys */
	size_t stride;   /* words per slot */
	unsigned npairs;
	unsigned nworkers; /* 1 for a private table */
	unsigned max_per_key;
	unsigned prefix4, prefix6;
	bool shared;
	uint64_t seed[3];
	serve_limits_hook_fn hook; /* tests only */
	void *hook_arg;
};

/* ---- keys and hashing ---- */

/*
 * An IPv4 key is written as its IPv4-mapped IPv6 address, so the family
 * is part of the 16 bytes and a mapped caller on a dual-stack listener is
 * the same key as a plain IPv4 one. No IPv6 key can look like a mapped
 * one: an IPv6 address in ::ffff:0:0/96 is taken as IPv4, and masking any
 * other to fewer than 96 bits zeroes the 0xffff that marks the mapped form
 * (or some bits before it).
 */
static void
mask_bits(uint8_t *b, size_t n, unsigned prefix)
{
	for (size_t i = 0; i < n; i++) {
		unsigned keep = prefix > 8 * i ? prefix - 8 * (unsigned)i : 0;
		if (keep < 8)
			b[i] &= (uint8_t)(0xff00u >> keep);
	}
}

static int
make_key(const struct serve_limits *t, const struct pbx_addr *a,
    uint32_t key[KEY_WORDS])
{
	uint8_t b[16] = {0};
	const uint8_t *v4;

	if (a->len > 0 && a->u.sa.sa_family == AF_INET) {
		v4 = (const uint8_t *)&a->u.in4.sin_addr;
	} else if (a->len > 0 && a->u.sa.sa_family == AF_INET6) {
		const struct in6_addr *ip6 = &a->u.in6.sin6_addr;
		if (!IN6_IS_ADDR_V4MAPPED(ip6)) {
			memcpy(b, ip6->s6_addr, 16);
			mask_bits(b, 16, t->prefix6);
			memcpy(key, b, 16);
			return 0;
		}
		v4 = ip6->s6_addr + 12;
	} else {
		return -EAFNOSUPPORT;
	}
	b[10] = 0xff;
	b[11] = 0xff;
	memcpy(b + 12, v4, 4);
	mask_bits(b + 12, 4, t->prefix4);
	memcpy(key, b, 16);
	return 0;
}

__extension__ typedef unsigned __int128 u128;

/* The folded 64x64->128 multiply of wyhash: fast, and mixes both ways. */
static uint64_t
mum(uint64_t a, uint64_t b)
{
	u128 p = (u128)a * b;
	return (uint64_t)p ^ (uint64_t)(p >> 64);
}

/*
 * Keyed with the table's random seed, so a caller who picks the low bits
 * of its addresses (a /64 holds 2^64 of them) cannot aim them at one run
 * of slots without knowing the seed.
 */
static size_t
home_of(const struct serve_limits *t, const uint32_t key[KEY_WORDS])
{
	uint64_t k[2];

	memcpy(k, key, 16);
	uint64_t h = mum(k[0] ^ t->seed[0], k[1] ^ t->seed[1]);
	return (size_t)mum(h ^ t->seed[2], 0x9e3779b97f4a7c15u) & t->mask;
}

/* getrandom, or (very early at boot) the clock and the pid: no I/O. */
static void
make_seed(uint64_t seed[3])
{
	if (getrandom(seed, 3 * sizeof seed[0], GRND_NONBLOCK) ==
	    (ssize_t)(3 * sizeof seed[0]))
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
		     (uint64_t)(uintptr_t)seed ^ ((uint64_t)getpid() << 17);
	for (int i = 0; i < 3; i++) {
		x = mum(x ^ 0xa0761d6478bd642fu, 0xe7037ed1a0b428dbu);
		seed[i] = x;
	}
}

/* ---- slots ---- */

static uint32_t *
slot(const struct serve_limits *t, size_t i)
{
	return t->slots + i * t->stride;
}

/*
 * A write that a crash must not see reordered before the writes it
 * commits: the compiler may not move stores across it, and it is one
 * store. (A process dies between instructions, so ordering the program's
 * own stores is all that matters; the next lock owner then sees them.)
 */
static void
commit(uint32_t *p, uint32_t v)
{
	atomic_signal_fence(memory_order_seq_cst);
	*(volatile uint32_t *)p = v;
	atomic_signal_fence(memory_order_seq_cst);
}

static void
step(const struct serve_limits *t, enum serve_limits_step s)
{
	if (t->hook != NULL)
		t->hook(t->hook_arg, s);
}

/* The slot holding key, or the empty slot that ends its probe. */
static size_t
find(const struct serve_limits *t, const uint32_t key[KEY_WORDS], size_t home,
    bool *found)
{
	size_t i = home;

	for (;;) {
		const uint32_t *s = slot(t, i);
		if (s[HOME_WORD] == 0) {
			*found = false;
			return i;
		}
		if (s[HOME_WORD] == home + 1 && memcmp(s, key, 16) == 0) {
			*found = true;
			return i;
		}
		i = (i + 1) & t->mask;
	}
}

/* A key's total, and the pair worker w holds (or a free one) if any. */
static unsigned
sum_pairs(const struct serve_limits *t, uint32_t *s, unsigned w,
    uint32_t **mine, uint32_t **spare)
{
	unsigned total = 0;

	*mine = NULL;
	*spare = NULL;
	for (unsigned p = 0; p < t->npairs; p++) {
		uint32_t v = s[PAIR_WORD + p];
		total += v & COUNT_MASK;
		if ((v & COUNT_MASK) != 0 && v >> COUNT_BITS == w)
			*mine = &s[PAIR_WORD + p];
		else if ((v & COUNT_MASK) == 0 && *spare == NULL)
			*spare = &s[PAIR_WORD + p];
	}
	return total;
}

/*
 * Fill the hole left by a removal: move back each later entry of the run
 * whose probe passes the hole, and end with the last hole empty. The
 * journal follows the hole, so a repair can call this again from there.
 */
static void
shift_from(const struct serve_limits *t, size_t hole)
{
	size_t j = hole;

	for (;;) {
		j = (j + 1) & t->mask;
		const uint32_t *s = slot(t, j);
		if (s[HOME_WORD] == 0)
			break;
		size_t home = s[HOME_WORD] - 1;
		/* It stays if its home lies after the hole (in (hole, j]). */
		if (((j - home) & t->mask) < ((j - hole) & t->mask))
			continue;
		memcpy(slot(t, hole), s, t->stride * sizeof *s);
		step(t, SERVE_LIMITS_MOVE);
		commit(&t->sh->hole, (uint32_t)j);
		step(t, SERVE_LIMITS_SHIFTED);
		hole = j;
	}
	commit(&slot(t, hole)[HOME_WORD], 0);
	step(t, SERVE_LIMITS_CLEARED);
	commit(&t->sh->hole, NO_HOLE);
	step(t, SERVE_LIMITS_DELETED);
	t->sh->keys--;
}

static void
remove_at(const struct serve_limits *t, size_t i)
{
	commit(&t->sh->hole, (uint32_t)i);
	step(t, SERVE_LIMITS_DELETE);
	shift_from(t, i);
}

/* ---- the lock ---- */

/* Finish what the dead owner left: its removal, and the key count. */
static void
repair(const struct serve_limits *t)
{
	struct shared *sh = t->sh;

	if (sh->hole != NO_HOLE)
		shift_from(t, sh->hole);
	uint32_t keys = 0;
	for (size_t i = 0; i <= t->mask; i++)
		keys += slot(t, i)[HOME_WORD] != 0;
	sh->keys = keys;
	sh->repairs++;
}

static int
lock(const struct serve_limits *t)
{
	if (!t->shared)
		return 0;
	int r = pthread_mutex_lock(&t->sh->lock);
	if (r == EOWNERDEAD) {
		repair(t);
		r = pthread_mutex_consistent(&t->sh->lock);
	}
	if (r != 0)
		return -r;
	step(t, SERVE_LIMITS_LOCKED);
	return 0;
}

static void
unlock(const struct serve_limits *t)
{
	if (t->shared)
		pthread_mutex_unlock(&t->sh->lock);
}

/* ---- making and freeing ---- */

static int
check_opts(const struct serve_limits_opts *o)
{
	if (o->max_per_key < 1 || o->max_per_key > SERVE_LIMITS_MAX_PER_KEY ||
	    o->prefix4 > 32 || o->prefix6 > 128 || o->capacity < 1 ||
	    o->capacity > SERVE_LIMITS_MAX_CAPACITY ||
	    o->workers > SERVE_LIMITS_MAX_WORKERS)
		return -EINVAL;
	return 0;
}

static int
init_lock(struct shared *sh)
{
	pthread_mutexattr_t ma;
	int r = pthread_mutexattr_init(&ma);

	if (r != 0)
		return -r;
	r = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	if (r == 0)
		r = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	if (r == 0)
		r = pthread_mutex_init(&sh->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	return -r;
}

/*
 * Twice the capacity, rounded up to a power of two: at most half full.
 * Anonymous memory is zero, so every slot starts empty; shared, it is
 * inherited by the workers the supervisor forks.
 */
static int
map_table(struct serve_limits *t)
{
	size_t nslots = 2;
	while (nslots < 2 * t->capacity)
		nslots *= 2;
	t->mask = nslots - 1;
	size_t slot_size = t->stride * sizeof(uint32_t);
	if (nslots > (SIZE_MAX - SLOTS_OFFSET) / slot_size)
		return -ENOMEM;
	t->map_size = SLOTS_OFFSET + nslots * slot_size;
	int flags = MAP_ANONYMOUS | (t->shared ? MAP_SHARED : MAP_PRIVATE);
	void *m = mmap(NULL, t->map_size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	t->sh = m;
	t->slots = (uint32_t *)((char *)m + SLOTS_OFFSET);
	t->sh->hole = NO_HOLE;
	return 0;
}

int
serve_limits_new(struct serve_limits **out, const struct serve_limits_opts *o)
{
	int r = check_opts(o);
	if (r < 0)
		return r;
	struct serve_limits *t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	t->nworkers = o->workers > 0 ? o->workers : 1;
	t->npairs = t->nworkers < o->max_per_key ? t->nworkers : o->max_per_key;
	t->stride = PAIR_WORD + t->npairs;
	t->capacity = o->capacity;
	t->max_per_key = o->max_per_key;
	t->prefix4 = o->prefix4;
	t->prefix6 = o->prefix6;
	t->shared = o->workers > 0;
	make_seed(t->seed);
	r = map_table(t);
	if (r < 0)
		goto out_free;
	if (t->shared) {
		r = init_lock(t->sh);
		if (r < 0)
			goto out_unmap;
	}
	*out = t;
	return 0;
out_unmap:
	munmap(t->sh, t->map_size);
out_free:
	free(t);
	return r;
}

void
serve_limits_free(struct serve_limits *t)
{
	if (t == NULL)
		return;
	/* The lock is not destroyed: other processes may still use it. */
	munmap(t->sh, t->map_size);
	free(t);
}

void
serve_limits_set_hook(
    struct serve_limits *t, serve_limits_hook_fn fn, void *arg)
{
	t->hook = fn;
	t->hook_arg = arg;
}

/* ---- counting ---- */

static int
insert_at(struct serve_limits *t, size_t i, unsigned w,
    const uint32_t key[KEY_WORDS], size_t home)
{
	uint32_t *s = slot(t, i);

	if (t->sh->keys >= t->capacity)
		return -ENOSPC;
	memcpy(s, key, 16);
	memset(&s[PAIR_WORD], 0, t->npairs * sizeof *s);
	s[PAIR_WORD] = (uint32_t)w << COUNT_BITS | 1;
	step(t, SERVE_LIMITS_INSERT);
	commit(&s[HOME_WORD], (uint32_t)home + 1);
	step(t, SERVE_LIMITS_INSERTED);
	t->sh->keys++;
	return 1;
}

static int
take_locked(struct serve_limits *t, unsigned w, const uint32_t key[KEY_WORDS],
    size_t home)
{
	bool found;
	size_t i = find(t, key, home, &found);
	if (!found)
		return insert_at(t, i, w, key, home);
	uint32_t *mine, *spare;
	unsigned total = sum_pairs(t, slot(t, i), w, &mine, &spare);
	if (total >= t->max_per_key)
		return -EBUSY;
	/* Below N, fewer than min(workers, N) pairs are in use: spare is
	 * there when mine is not (or the table is damaged). */
	if (mine != NULL)
		(*mine)++;
	else if (spare != NULL)
		*spare = (uint32_t)w << COUNT_BITS | 1;
	else
		return -EBUSY;
	step(t, SERVE_LIMITS_COUNTED);
	return (int)total + 1;
}

int
serve_limits_take(struct serve_limits *t, unsigned w, const struct pbx_addr *a)
{
	uint32_t key[KEY_WORDS];

	if (w >= t->nworkers)
		return -EINVAL;
	int r = make_key(t, a, key);
	if (r < 0)
		return r;
	size_t home = home_of(t, key);
	r = lock(t);
	if (r < 0)
		return r;
	r = take_locked(t, w, key, home);
	unlock(t);
	return r;
}

static void
give_locked(struct serve_limits *t, unsigned w, const uint32_t key[KEY_WORDS],
    size_t home)
{
	bool found;
	size_t i = find(t, key, home, &found);
	if (!found)
		return;
	uint32_t *mine, *spare;
	unsigned total = sum_pairs(t, slot(t, i), w, &mine, &spare);
	if (mine == NULL)
		return;
	(*mine)--; /* at 0 the pair is free */
	step(t, SERVE_LIMITS_COUNTED);
	if (total == 1)
		remove_at(t, i);
}

void
serve_limits_give(struct serve_limits *t, unsigned w, const struct pbx_addr *a)
{
	uint32_t key[KEY_WORDS];

	if (w >= t->nworkers || make_key(t, a, key) < 0)
		return;
	size_t home = home_of(t, key);
	if (lock(t) < 0)
		return;
	give_locked(t, w, key, home);
	unlock(t);
}

/* Clear w's pair in slot i; true if the entry still has a count. */
static bool
drop_worker(const struct serve_limits *t, size_t i, unsigned w)
{
	uint32_t *s = slot(t, i);
	unsigned total = 0;

	for (unsigned p = 0; p < t->npairs; p++) {
		if (s[PAIR_WORD + p] >> COUNT_BITS == w)
			s[PAIR_WORD + p] = 0;
		total += s[PAIR_WORD + p] & COUNT_MASK;
	}
	return total > 0;
}

/*
 * A removal at i shifts later entries into i, so i is looked at again
 * until it is empty or keeps a count. Entries shifted across the end of
 * the table come from slots already seen: looking at them again is
 * harmless, and none that is still to be seen lands before i.
 */
void
serve_limits_forget_worker(struct serve_limits *t, unsigned w)
{
	if (w >= t->nworkers || lock(t) < 0)
		return;
	for (size_t i = 0; i <= t->mask; i++)
		while (slot(t, i)[HOME_WORD] != 0 && !drop_worker(t, i, w))
			remove_at(t, i);
	unlock(t);
}

unsigned
serve_limits_count(const struct serve_limits *t, const struct pbx_addr *a)
{
	uint32_t key[KEY_WORDS];

	if (make_key(t, a, key) < 0)
		return 0;
	size_t home = home_of(t, key);
	if (lock(t) < 0)
		return 0;
	bool found;
	size_t i = find(t, key, home, &found);
	unsigned total = 0;
	for (unsigned p = 0; found && p < t->npairs; p++)
		total += slot(t, i)[PAIR_WORD + p] & COUNT_MASK;
	unlock(t);
	return total;
}

/* Whether a lookup of slot i's key from its home finds slot i. */
static bool
in_place(const struct serve_limits *t, size_t i)
{
	const uint32_t *s = slot(t, i);
	size_t home = home_of(t, s);
	bool found;

	return s[HOME_WORD] == home + 1 && find(t, s, home, &found) == i &&
	       found;
}

void
serve_limits_stats(const struct serve_limits *t, struct serve_limits_stats *out)
{
	*out = (struct serve_limits_stats){.slots = t->mask + 1};
	if (lock(t) < 0)
		return;
	for (size_t i = 0; i <= t->mask; i++) {
		const uint32_t *s = slot(t, i);
		if (s[HOME_WORD] == 0)
			continue;
		out->keys++;
		size_t d = (i - (s[HOME_WORD] - 1)) & t->mask;
		out->longest = d > out->longest ? d : out->longest;
		unsigned total = 0;
		for (unsigned p = 0; p < t->npairs; p++)
			total += s[PAIR_WORD + p] & COUNT_MASK;
		out->idle += total == 0;
		out->broken += !in_place(t, i);
	}
	out->broken += out->keys != t->sh->keys;
	out->repairs = t->sh->repairs;
	unlock(t);
}
