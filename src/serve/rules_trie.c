/* SPDX-License-Identifier: MIT */
/*
 * rules_trie.c: the access rules' path-compressed binary trie: 128-bit
 * keys, insert, longest-prefix lookup, and the set's memory.
 */
#include "rules_trie.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * A trie node. A node exists only for a rule or where two branches part
 * (path compression), so n rules need at most 2n nodes besides the two
 * roots, and a lookup takes one step per node on its path: at most 33 or
 * 129, each a 128-bit compare, whatever the number of rules.
 */
struct rules_node {
	struct rules_key key; /* the prefix; the bits past len are zero */
	int32_t child[2]; /* longer prefixes, by the bit after len; 0: none */
	int32_t rule;     /* index in rules, or -1: a branch point only */
	uint8_t len;
};

/* ---------------------------------------------------------------- */
/* 128-bit keys                                                      */
/* ---------------------------------------------------------------- */

struct rules_key
rules_key_mask(struct rules_key k, unsigned len)
{
	uint64_t hi = len >= 64  ? UINT64_MAX
		      : len == 0 ? 0
				 : UINT64_MAX << (64 - len);
	uint64_t lo = len <= 64 ? 0 : UINT64_MAX << (128 - len);
	return (struct rules_key){.hi = k.hi & hi, .lo = k.lo & lo};
}

static unsigned
key_bit(struct rules_key k, unsigned i)
{
	return (unsigned)(i < 64 ? k.hi >> (63 - i) : k.lo >> (127 - i)) & 1;
}

/* The number of leading bits a and b share. */
static unsigned
key_common(struct rules_key a, struct rules_key b)
{
	if (a.hi != b.hi)
		return (unsigned)__builtin_clzll(a.hi ^ b.hi);
	if (a.lo != b.lo)
		return 64 + (unsigned)__builtin_clzll(a.lo ^ b.lo);
	return 128;
}

static bool
key_covers(const struct rules_node *n, struct rules_key k)
{
	struct rules_key m = rules_key_mask(k, n->len);
	return m.hi == n->key.hi && m.lo == n->key.lo;
}

static uint64_t
load64(const unsigned char *b, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | b[i];
	return v;
}

struct rules_key
rules_key_from(int family, const unsigned char *b)
{
	if (family == AF_INET)
		return (struct rules_key){.hi = load64(b, 4) << 32};
	return (struct rules_key){.hi = load64(b, 8), .lo = load64(b + 8, 8)};
}

/* ::ffff:0:0/96, where a dual-stack listener puts its IPv4 callers. */
bool
rules_key_is_mapped(struct rules_key k)
{
	return k.hi == 0 && k.lo >> 32 == 0xffff;
}

/* The address part of a key as text, for a message's suggestion. */
void
rules_key_format(struct rules_key k, int family, char *buf, size_t size)
{
	unsigned char b[16];
	for (int i = 0; i < 8; i++) {
		b[i] = (unsigned char)(k.hi >> (56 - 8 * i));
		b[8 + i] = (unsigned char)(k.lo >> (56 - 8 * i));
	}
	if (inet_ntop(family, b, buf, (socklen_t)size) == NULL)
		snprintf(buf, size, "?");
}

/* ---------------------------------------------------------------- */
/* Memory                                                            */
/* ---------------------------------------------------------------- */

/* buf grown to hold need items of size bytes; NULL (buf kept) if not. */
void *
rules_grow(void *buf, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return buf;
	size_t n = *cap > 0 ? *cap : 16;
	while (n < need) {
		if (n > SIZE_MAX / 4 / size)
			return NULL;
		n *= 2;
	}
	void *p = realloc(buf, n * size);
	if (p != NULL)
		*cap = n;
	return p;
}

/* Give back the slack of growth; the set's memory is then its size. */
void *
rules_shrink(void *buf, size_t n, size_t size)
{
	void *p = n > 0 ? realloc(buf, n * size) : NULL;
	return p != NULL ? p : buf;
}

/* ---------------------------------------------------------------- */
/* The trie                                                          */
/* ---------------------------------------------------------------- */

/* A new node's index, or -ENOMEM. It may move every node. */
static int32_t
node_new(struct serve_rules *r, struct rules_key k, unsigned len, int32_t rule)
{
	if (r->nnodes >= INT32_MAX)
		return -ENOMEM;
	struct rules_node *nodes =
	    rules_grow(r->nodes, &r->node_cap, r->nnodes + 1, sizeof *nodes);
	if (nodes == NULL)
		return -ENOMEM;
	r->nodes = nodes;
	nodes[r->nnodes] =
	    (struct rules_node){.key = k, .len = (uint8_t)len, .rule = rule};
	return (int32_t)r->nnodes++;
}

/*
 * Put k/len between node at and its child c (on side b), when the two
 * agree on only their first common bits, fewer than c's length: if k is
 * a prefix of c, k's node becomes c's parent; else a new branch point at
 * common bits holds k's node and c.
 */
static int
split(struct serve_rules *r, int32_t at, unsigned b, int32_t c, unsigned common,
    struct rules_key k, unsigned len, int32_t rule)
{
	struct rules_key ck = r->nodes[c].key;
	int32_t leaf = node_new(r, k, len, rule);
	if (leaf < 0)
		return leaf;
	int32_t top = leaf;
	if (common < len) {
		top = node_new(r, rules_key_mask(k, common), common, -1);
		if (top < 0)
			return top;
		r->nodes[top].child[key_bit(k, common)] = leaf;
	}
	r->nodes[top].child[key_bit(ck, common)] = c;
	r->nodes[at].child[b] = top;
	return 0;
}

/* Returns 0, -ENOMEM, or -EEXIST with *dup the rule of the same prefix. */
int
rules_trie_insert(struct serve_rules *r, int32_t at, struct rules_key k,
    unsigned len, int32_t rule, int32_t *dup)
{
	for (;;) {
		/* Here node at covers k, and is no longer than len. */
		struct rules_node *n = &r->nodes[at];
		if (n->len == len && n->rule >= 0) {
			*dup = n->rule;
			return -EEXIST;
		}
		if (n->len == len) {
			n->rule = rule;
			return 0;
		}
		unsigned b = key_bit(k, n->len);
		int32_t c = n->child[b];
		if (c == 0) {
			int32_t leaf = node_new(r, k, len, rule);
			if (leaf < 0)
				return leaf;
			r->nodes[at].child[b] = leaf;
			return 0;
		}
		unsigned common = key_common(k, r->nodes[c].key);
		common = common < len ? common : len;
		if (common < r->nodes[c].len)
			return split(r, at, b, c, common, k, len, rule);
		at = c;
	}
}

/* The rule of the longest prefix on k's path, or -1. */
int32_t
rules_trie_lookup(const struct serve_rules *r, int32_t root, struct rules_key k,
    unsigned maxlen)
{
	const struct rules_node *n = &r->nodes[root];
	int32_t best = n->rule;
	while (n->len < maxlen) {
		int32_t c = n->child[key_bit(k, n->len)];
		if (c == 0 || !key_covers(&r->nodes[c], k))
			break;
		n = &r->nodes[c];
		if (n->rule >= 0)
			best = n->rule;
	}
	return best;
}

int
rules_trie_init(struct serve_rules *r)
{
	if (node_new(r, (struct rules_key){0}, 0, -1) != RULES_ROOT4 ||
	    node_new(r, (struct rules_key){0}, 0, -1) != RULES_ROOT6)
		return -ENOMEM;
	return 0;
}

void
rules_trie_shrink(struct serve_rules *r)
{
	r->nodes = rules_shrink(r->nodes, r->nnodes, sizeof *r->nodes);
}
