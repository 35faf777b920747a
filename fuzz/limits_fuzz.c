/* SPDX-License-Identifier: MIT */
/*
 * limits_fuzz.c: libFuzzer target for the per-address counter: a run of
 * take, give, forget_worker and count on addresses and options from the
 * input gives exactly what a plain model says, and the table stays sound.
 *
 * Input: 5 bytes of options (prefix4, prefix6, N, workers, capacity), 8
 * addresses of 17 bytes (a kind, then 16 bytes), then 2 bytes per call.
 */
#include "../src/serve/ip_limits.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { NADDR = 8, MAXW = 4 };

struct input {
	const uint8_t *p;
	size_t left;
};

static uint8_t
next(struct input *in)
{
	if (in->left == 0)
		return 0;
	in->left--;
	return *in->p++;
}

/* IPv4, IPv4-mapped, IPv6, or the address before with one bit flipped. */
static void
read_addr(struct input *in, struct pbx_addr *a, const struct pbx_addr *prev)
{
	uint8_t kind = next(in) % 4, b[16];
	for (int i = 0; i < 16; i++)
		b[i] = next(in);
	memset(a, 0, sizeof *a);
	if (kind == 0) {
		a->u.in4.sin_family = AF_INET;
		memcpy(&a->u.in4.sin_addr, b, 4);
		a->len = sizeof a->u.in4;
		return;
	}
	a->u.in6.sin6_family = AF_INET6;
	a->len = sizeof a->u.in6;
	uint8_t *ip = a->u.in6.sin6_addr.s6_addr;
	if (kind == 1) {
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, b, 4);
	} else if (kind == 2 || prev == NULL || prev->len != a->len) {
		memcpy(ip, b, 16);
	} else {
		memcpy(ip, prev->u.in6.sin6_addr.s6_addr, 16);
		ip[b[0] % 16] ^= (uint8_t)(1u << (b[1] % 8));
	}
}

/* The key, worked out bit by bit: a family tag and the kept bits. */
static void
model_key(const struct pbx_addr *a, unsigned p4, unsigned p6, uint8_t k[17])
{
	static const uint8_t mapped[12] = {
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const uint8_t *ip;
	unsigned bits;

	memset(k, 0, 17);
	if (a->u.sa.sa_family == AF_INET) {
		ip = (const uint8_t *)&a->u.in4.sin_addr;
		bits = p4;
		k[0] = 4;
	} else if (memcmp(a->u.in6.sin6_addr.s6_addr, mapped, 12) == 0) {
		ip = a->u.in6.sin6_addr.s6_addr + 12;
		bits = p4;
		k[0] = 4;
	} else {
		ip = a->u.in6.sin6_addr.s6_addr;
		bits = p6;
		k[0] = 6;
	}
	for (unsigned i = 0; i < bits; i++)
		if (ip[i / 8] >> (7 - i % 8) & 1)
			k[1 + i / 8] |= (uint8_t)(1u << (7 - i % 8));
}

struct model {
	unsigned n, nworkers;
	size_t capacity;
	unsigned key_of[NADDR]; /* the address's key: an index below */
	unsigned count[NADDR][MAXW];
};

static unsigned
model_total(const struct model *m, unsigned k)
{
	unsigned total = 0;
	for (unsigned w = 0; w < m->nworkers; w++)
		total += m->count[k][w];
	return total;
}

static size_t
model_keys(const struct model *m)
{
	size_t n = 0;
	for (unsigned k = 0; k < NADDR; k++)
		n += model_total(m, k) > 0;
	return n;
}

static int
model_take(struct model *m, unsigned w, unsigned k)
{
	unsigned total = model_total(m, k);
	if (total >= m->n)
		return -EBUSY;
	if (total == 0 && model_keys(m) >= m->capacity)
		return -ENOSPC;
	m->count[k][w]++;
	return (int)total + 1;
}

static void
check_sound(const struct serve_limits *t, const struct model *m)
{
	struct serve_limits_stats st;
	serve_limits_stats(t, &st);
	if (st.broken != 0 || st.idle != 0 || st.keys != model_keys(m) ||
	    st.repairs != 0)
		abort();
}

static void
call(struct serve_limits *t, struct model *m, const struct pbx_addr *addrs,
    uint8_t op, uint8_t arg)
{
	unsigned i = (op >> 2) % NADDR, k = m->key_of[i];
	unsigned w = arg % m->nworkers;

	switch (op & 3) {
	case 0:
		if (serve_limits_take(t, w, &addrs[i]) != model_take(m, w, k))
			abort();
		break;
	case 1:
		serve_limits_give(t, w, &addrs[i]);
		m->count[k][w] -= m->count[k][w] > 0;
		break;
	case 2:
		serve_limits_forget_worker(t, w);
		for (unsigned j = 0; j < NADDR; j++)
			m->count[j][w] = 0;
		break;
	default:
		if (serve_limits_count(t, &addrs[i]) != model_total(m, k))
			abort();
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {.p = data, .left = size};
	struct serve_limits_opts o = {.prefix4 = next(&in) % 33,
	    .prefix6 = next(&in) % 129,
	    .max_per_key = 1 + next(&in) % 4,
	    .workers = next(&in) % (MAXW + 1),
	    .capacity = 1 + next(&in) % NADDR};
	struct model m = {.n = o.max_per_key,
	    .nworkers = o.workers > 0 ? o.workers : 1,
	    .capacity = o.capacity};
	struct pbx_addr addrs[NADDR];
	uint8_t keys[NADDR][17];
	for (unsigned i = 0; i < NADDR; i++) {
		read_addr(&in, &addrs[i], i > 0 ? &addrs[i - 1] : NULL);
		model_key(&addrs[i], o.prefix4, o.prefix6, keys[i]);
		m.key_of[i] = i;
		for (unsigned j = 0; j < i; j++)
			if (memcmp(keys[i], keys[j], 17) == 0) {
				m.key_of[i] = m.key_of[j];
				break;
			}
	}
	struct serve_limits *t;
	if (serve_limits_new(&t, &o) != 0)
		abort();
	while (in.left >= 2) {
		uint8_t op = next(&in);
		call(t, &m, addrs, op, next(&in));
		check_sound(t, &m);
	}
	for (unsigned i = 0; i < NADDR; i++)
		if (serve_limits_count(t, &addrs[i]) !=
		    model_total(&m, m.key_of[i]))
			abort();
	serve_limits_free(t);
	return 0;
}
