/* SPDX-License-Identifier: MIT */
/*
 * rules_trie.h: what the rules parser (rules.c) and its trie (rules_trie.c)
 * share: the set's layout, 128-bit keys, and the trie's calls.
 */
#ifndef SERVE_RULES_TRIE_H
#define SERVE_RULES_TRIE_H

#include "rules.h"

#include <stdint.h>

/*
 * A prefix or address as 128 bits, most significant first. IPv4 sits in
 * the top 32 bits of hi, so both families share the trie code.
 */
struct rules_key {
	uint64_t hi, lo;
};

struct rules_node; /* a trie node; its layout is the trie's own */

/* The roots, /0 of each family. Being no one's child, 0 can mean none. */
enum { RULES_ROOT4, RULES_ROOT6 };

struct serve_rule {
	const char *const *vars; /* nvars strings in the set's arena */
	uint32_t nvars;
	unsigned line;
	bool allow;
};

struct serve_rules {
	struct rules_node *nodes; /* owned; the two roots always exist */
	size_t nnodes, node_cap;
	struct serve_rule *rules; /* owned, in the order of the text */
	size_t nrules, rule_cap;
	const char **vars; /* owned: every rule's variables, in rule order */
	char *arena;       /* owned: the "VAR=value" strings vars point to */
};

/* k with the bits past len cleared. */
struct rules_key rules_key_mask(struct rules_key k, unsigned len);

/* The key of an address: 4 bytes (AF_INET) or 16, network order. */
struct rules_key rules_key_from(int family, const unsigned char *b);

/* ::ffff:0:0/96, where a dual-stack listener puts its IPv4 callers. */
bool rules_key_is_mapped(struct rules_key k);

/* The address part of a key as text, for a message's suggestion. */
void rules_key_format(struct rules_key k, int family, char *buf, size_t size);

/* buf grown to hold need items of size bytes; NULL (buf kept) if not. */
void *rules_grow(void *buf, size_t *cap, size_t need, size_t size);

/* Give back the slack of growth; the set's memory is then its size. */
void *rules_shrink(void *buf, size_t n, size_t size);

/* The two roots of a new, empty set: 0 or -ENOMEM. */
int rules_trie_init(struct serve_rules *r);

/*
 * Give rule (an index in r->rules) the prefix k/len under root: 0,
 * -ENOMEM, or -EEXIST with *dup the rule of the same prefix.
 */
int rules_trie_insert(struct serve_rules *r, int32_t root, struct rules_key k,
    unsigned len, int32_t rule, int32_t *dup);

/* The rule of the longest prefix on k's path from root, or -1. */
int32_t rules_trie_lookup(const struct serve_rules *r, int32_t root,
    struct rules_key k, unsigned maxlen);

/* The nodes' slack given back, once the set is final. */
void rules_trie_shrink(struct serve_rules *r);

#endif /* SERVE_RULES_TRIE_H */
