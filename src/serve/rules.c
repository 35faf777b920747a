/* SPDX-License-Identifier: MIT */
/*
 * rules.c: access rules: parse a rules text into a rule set, load it from
 * a file, and answer lookups (`pbx serve --rules`); the set's prefix trie
 * is in rules_trie.c.
 */
#include "rules_trie.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where the parse is, and what it builds before the set is final. */
struct parser {
	const char *name;
	char *err;
	size_t errlen;
	const char *line; /* the current line, without its newline or CR */
	size_t len;
	unsigned lineno;
	struct serve_rules *r;
	/* Offsets, not pointers, while the arena may still move. */
	size_t *var_off;
	size_t nvar, var_cap;
	char *arena;
	size_t arena_len, arena_cap;
};

/* A parsed CIDR token, kept for the messages that quote it. */
struct prefix {
	struct rules_key key;
	unsigned len;
	int family;
	size_t at, toklen; /* the token's offset in the line and length */
};

/* ---------------------------------------------------------------- */
/* Messages                                                          */
/* ---------------------------------------------------------------- */

#define SHOWN_MAX 40

/* Quoted text for a message: cut short, nothing a terminal obeys. */
struct shown {
	char s[SHOWN_MAX + 4];
};

static bool
printable(unsigned char c)
{
	return c >= 0x20 && c < 0x7f;
}

static struct shown
show(const char *s, size_t n)
{
	struct shown out;
	size_t m = n > SHOWN_MAX ? SHOWN_MAX : n;
	for (size_t i = 0; i < m; i++)
		out.s[i] = printable((unsigned char)s[i]) ? s[i] : '?';
	if (n > SHOWN_MAX) {
		memcpy(out.s + m, "...", 3);
		m += 3;
	}
	out.s[m] = '\0';
	return out;
}

/* err starts with the name (errlen > 0); returns the length written. */
static size_t
put_name(char *err, size_t errlen, const char *name)
{
	size_t i = 0;
	for (; name[i] != '\0' && i + 1 < errlen; i++)
		err[i] = printable((unsigned char)name[i]) ? name[i] : '?';
	err[i] = '\0';
	return i;
}

/* "NAME:LINE:COL: " and the message, for the byte at offset at. */
__attribute__((format(printf, 3, 4))) static int
fail(struct parser *p, size_t at, const char *fmt, ...)
{
	if (p->errlen == 0)
		return -EINVAL;
	size_t n = put_name(p->err, p->errlen, p->name);
	int k =
	    snprintf(p->err + n, p->errlen - n, ":%u:%zu: ", p->lineno, at + 1);
	if (k < 0 || (size_t)k >= p->errlen - n)
		return -EINVAL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err + n + (size_t)k, p->errlen - n - (size_t)k, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int
nomem(struct parser *p)
{
	if (p->errlen > 0) {
		size_t n = put_name(p->err, p->errlen, p->name);
		snprintf(p->err + n, p->errlen - n, ":%u: %s", p->lineno,
		    strerror(ENOMEM));
	}
	return -ENOMEM;
}

/* ---------------------------------------------------------------- */
/* Lines                                                             */
/* ---------------------------------------------------------------- */

static bool
blank(char c)
{
	return c == ' ' || c == '\t';
}

static size_t
skip_blank(const struct parser *p, size_t i)
{
	while (i < p->len && blank(p->line[i]))
		i++;
	return i;
}

/* At i, just past a blank or at the start: nothing more but a comment. */
static bool
at_end(const struct parser *p, size_t i)
{
	return i == p->len || p->line[i] == '#';
}

static size_t
token_end(const struct parser *p, size_t i)
{
	while (i < p->len && !blank(p->line[i]))
		i++;
	return i;
}

static int
check_bytes(struct parser *p)
{
	for (size_t i = 0; i < p->len; i++) {
		unsigned char c = (unsigned char)p->line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(p, i,
			    "control byte 0x%02x (a rules file is text)", c);
	}
	return 0;
}

/* A decimal 0..max, no sign, no leading zero. */
static bool
parse_len(const char *s, size_t n, unsigned max, unsigned *out)
{
	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* The address before the '/' (alen bytes at tok) into pre's key. */
static bool
parse_ip(const char *tok, size_t alen, struct prefix *pre)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char b[16];
	if (alen == 0 || alen >= sizeof buf)
		return false;
	memcpy(buf, tok, alen);
	buf[alen] = '\0';
	pre->family = memchr(tok, ':', alen) != NULL ? AF_INET6 : AF_INET;
	if (inet_pton(pre->family, buf, b) != 1)
		return false;
	pre->key = rules_key_from(pre->family, b);
	return true;
}

/* The prefix must name a network, and one a caller can come from. */
static int
check_prefix(struct parser *p, const struct prefix *pre)
{
	const char *tok = p->line + pre->at;
	struct rules_key net = rules_key_mask(pre->key, pre->len);
	char ip[INET6_ADDRSTRLEN];
	if (net.hi != pre->key.hi || net.lo != pre->key.lo) {
		rules_key_format(net, pre->family, ip, sizeof ip);
		return fail(p, pre->at,
		    "host bits set in '%s' (did you mean %s/%u?)",
		    show(tok, pre->toklen).s, ip, pre->len);
	}
	if (pre->family == AF_INET6 && pre->len >= 96 &&
	    rules_key_is_mapped(pre->key)) {
		struct rules_key v4 = {.hi = pre->key.lo << 32};
		rules_key_format(v4, AF_INET, ip, sizeof ip);
		return fail(p, pre->at,
		    "IPv4-mapped prefix '%s' never matches (callers in ::ffff:0:0/96 are looked up as IPv4: write %s/%u)",
		    show(tok, pre->toklen).s, ip, pre->len - 96);
	}
	return 0;
}

static int
parse_cidr(struct parser *p, size_t at, struct prefix *pre)
{
	const char *tok = p->line + at;
	size_t toklen = token_end(p, at) - at;
	const char *slash = memchr(tok, '/', toklen);
	size_t alen = slash != NULL ? (size_t)(slash - tok) : toklen;
	*pre = (struct prefix){.at = at, .toklen = toklen};
	if (!parse_ip(tok, alen, pre))
		return fail(p, at,
		    "bad address '%s' (expected dotted-quad IPv4 or IPv6)",
		    show(tok, alen > 0 ? alen : toklen).s);
	unsigned max = pre->family == AF_INET ? 32 : 128;
	pre->len = max;
	if (slash != NULL &&
	    !parse_len(slash + 1, toklen - alen - 1, max, &pre->len))
		return fail(p, at + alen,
		    "bad prefix length '%s' (expected 0 to %u)",
		    show(slash, toklen - alen).s, max);
	return check_prefix(p, pre);
}

static int
parse_action(
    struct parser *p, const struct prefix *pre, size_t *at, bool *allow)
{
	size_t i = skip_blank(p, *at);
	if (at_end(p, i))
		return fail(p, i, "expected allow or deny after '%s'",
		    show(p->line + pre->at, pre->toklen).s);
	size_t n = token_end(p, i) - i;
	const char *tok = p->line + i;
	if (n == 5 && memcmp(tok, "allow", 5) == 0)
		*allow = true;
	else if (n == 4 && memcmp(tok, "deny", 4) == 0)
		*allow = false;
	else
		return fail(
		    p, i, "expected allow or deny, not '%s'", show(tok, n).s);
	*at = i + n;
	return 0;
}

/* A bare value at *i, copied to dst at *w. */
static int
parse_bare(struct parser *p, size_t *i, char *dst, size_t *w)
{
	const char *v = p->line + *i;
	size_t n = token_end(p, *i) - *i;
	if (n > 0 && v[0] == '#')
		return fail(p, *i,
		    "bad value '%s' (a value that starts with '#' must be quoted)",
		    show(v, n).s);
	if (memchr(v, '"', n) != NULL)
		return fail(p, *i,
		    "bad value '%s' (a bare value cannot hold '\"'; quote it)",
		    show(v, n).s);
	memcpy(dst + *w, v, n);
	*w += n;
	*i += n;
	return 0;
}

/* A "quoted" value at *i, decoded to dst at *w. */
static int
parse_quoted(struct parser *p, size_t *i, char *dst, size_t *w)
{
	const char *l = p->line;
	size_t q = *i, j = q + 1;
	for (;;) {
		if (j == p->len)
			return fail(p, q, "unterminated quote '%s'",
			    show(l + q, p->len - q).s);
		if (l[j] == '"')
			break;
		if (l[j] != '\\') {
			dst[(*w)++] = l[j++];
			continue;
		}
		if (j + 1 == p->len || (l[j + 1] != '"' && l[j + 1] != '\\'))
			return fail(p, j,
			    "bad escape '%s' (only \\\" and \\\\ are escapes)",
			    show(l + j, j + 1 < p->len ? 2 : 1).s);
		dst[(*w)++] = l[j + 1];
		j += 2;
	}
	j++;
	if (j < p->len && !blank(l[j]))
		return fail(p, j,
		    "expected a space after the closing quote, not '%s'",
		    show(l + j, token_end(p, j) - j).s);
	*i = j;
	return 0;
}

/* One VAR=value at *at into the arena (room reserved by parse_vars). */
static int
parse_var(struct parser *p, size_t *at, size_t *name_len)
{
	const char *l = p->line;
	size_t s = *at, i = s;
	while (i < p->len && (l[i] == '_' || (l[i] >= 'A' && l[i] <= 'Z') ||
				 (l[i] >= 'a' && l[i] <= 'z') ||
				 (i > s && l[i] >= '0' && l[i] <= '9')))
		i++;
	if (i == s || i == p->len || l[i] != '=')
		return fail(p, s, "bad variable '%s' (expected VAR=value)",
		    show(l + s, token_end(p, s) - s).s);
	*name_len = i - s;
	char *dst = p->arena + p->arena_len;
	size_t w = i + 1 - s;
	memcpy(dst, l + s, w);
	i++;
	int rc = i < p->len && l[i] == '"' ? parse_quoted(p, &i, dst, &w)
					   : parse_bare(p, &i, dst, &w);
	if (rc < 0)
		return rc;
	dst[w++] = '\0';
	p->var_off[p->nvar++] = p->arena_len;
	p->arena_len += w;
	*at = i;
	return 0;
}

/* Each variable may be set once in a rule: which would win is unclear. */
static int
check_unique(
    struct parser *p, const size_t *names, const size_t *lens, size_t n)
{
	const char *l = p->line;
	for (size_t j = 0; j < n; j++) {
		if (lens[j] == lens[n] &&
		    memcmp(l + names[j], l + names[n], lens[n]) == 0)
			return fail(p, names[n],
			    "variable '%s' set twice (first at column %zu)",
			    show(l + names[n], lens[n]).s, names[j] + 1);
	}
	return 0;
}

static int
parse_vars(struct parser *p, size_t at, uint32_t *count)
{
	size_t names[SERVE_RULES_VARS_MAX], lens[SERVE_RULES_VARS_MAX];
	/* A line's strings take no more than its bytes plus their NULs. */
	char *a = rules_grow(p->arena, &p->arena_cap,
	    p->arena_len + p->len + SERVE_RULES_VARS_MAX, 1);
	if (a == NULL)
		return nomem(p);
	p->arena = a;
	size_t *o = rules_grow(
	    p->var_off, &p->var_cap, p->nvar + SERVE_RULES_VARS_MAX, sizeof *o);
	if (o == NULL)
		return nomem(p);
	p->var_off = o;
	size_t n = 0;
	for (at = skip_blank(p, at); !at_end(p, at); at = skip_blank(p, at)) {
		if (n == SERVE_RULES_VARS_MAX)
			return fail(p, at,
			    "too many variables (at most %d) '%s'",
			    SERVE_RULES_VARS_MAX,
			    show(p->line + at, token_end(p, at) - at).s);
		names[n] = at;
		int rc = parse_var(p, &at, &lens[n]);
		if (rc == 0)
			rc = check_unique(p, names, lens, n);
		if (rc < 0)
			return rc;
		n++;
	}
	*count = (uint32_t)n;
	return 0;
}

static int
add_rule(
    struct parser *p, const struct prefix *pre, const struct serve_rule *rule)
{
	struct serve_rules *r = p->r;
	/* Nodes are int32_t indices, at most two per rule. */
	if (r->nrules >= INT32_MAX / 4)
		return nomem(p);
	struct serve_rule *rules =
	    rules_grow(r->rules, &r->rule_cap, r->nrules + 1, sizeof *rules);
	if (rules == NULL)
		return nomem(p);
	r->rules = rules;
	int32_t dup = -1;
	int rc = rules_trie_insert(r,
	    pre->family == AF_INET ? RULES_ROOT4 : RULES_ROOT6, pre->key,
	    pre->len, (int32_t)r->nrules, &dup);
	if (rc == -EEXIST)
		return fail(p, pre->at,
		    "duplicate prefix '%s' (first on line %u)",
		    show(p->line + pre->at, pre->toklen).s, r->rules[dup].line);
	if (rc < 0)
		return nomem(p);
	rules[r->nrules++] = *rule;
	return 0;
}

static int
parse_line(struct parser *p)
{
	if (p->len > SERVE_RULES_LINE_MAX)
		return fail(p, 0, "line too long (more than %d bytes) '%s'",
		    SERVE_RULES_LINE_MAX, show(p->line, p->len).s);
	int rc = check_bytes(p);
	size_t at = skip_blank(p, 0);
	if (rc < 0 || at_end(p, at))
		return rc;
	struct prefix pre;
	struct serve_rule rule = {.line = p->lineno};
	rc = parse_cidr(p, at, &pre);
	at = pre.at + pre.toklen;
	if (rc == 0)
		rc = parse_action(p, &pre, &at, &rule.allow);
	if (rc == 0)
		rc = parse_vars(p, at, &rule.nvars);
	if (rc == 0)
		rc = add_rule(p, &pre, &rule);
	return rc;
}

/* ---------------------------------------------------------------- */
/* The set                                                           */
/* ---------------------------------------------------------------- */

void
serve_rules_free(struct serve_rules *r)
{
	if (r == NULL)
		return;
	free(r->nodes);
	free(r->rules);
	free(r->vars);
	free(r->arena);
	free(r);
}

static struct serve_rules *
rules_new(void)
{
	struct serve_rules *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	if (rules_trie_init(r) < 0) {
		serve_rules_free(r);
		return NULL;
	}
	return r;
}

/* Make the set final: the arena stops moving, so pointers replace offsets. */
static int
finish(struct parser *p)
{
	struct serve_rules *r = p->r;
	rules_trie_shrink(r);
	r->rules = rules_shrink(r->rules, r->nrules, sizeof *r->rules);
	r->arena = rules_shrink(p->arena, p->arena_len, 1);
	p->arena = NULL;
	if (p->nvar > 0) {
		r->vars = malloc(p->nvar * sizeof *r->vars);
		if (r->vars == NULL)
			return nomem(p);
	}
	for (size_t i = 0; i < p->nvar; i++)
		r->vars[i] = r->arena + p->var_off[i];
	size_t v = 0;
	for (size_t i = 0; i < r->nrules; i++) {
		r->rules[i].vars = r->rules[i].nvars > 0 ? r->vars + v : NULL;
		v += r->rules[i].nvars;
	}
	return 0;
}

int
serve_rules_parse(const char *name, const char *text, size_t len,
    struct serve_rules **out, char *err, size_t errlen)
{
	struct parser p = {.name = name, .err = err, .errlen = errlen};
	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	p.r = rules_new();
	if (p.r == NULL)
		return nomem(&p);
	int rc = 0;
	for (size_t pos = 0; rc == 0 && pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		p.line = text + pos;
		p.len = end - pos;
		p.lineno++;
		if (p.len > 0 && p.line[p.len - 1] == '\r')
			p.len--;
		rc = parse_line(&p);
		pos = end + 1;
	}
	if (rc == 0)
		rc = finish(&p);
	free(p.var_off);
	free(p.arena);
	if (rc < 0) {
		serve_rules_free(p.r);
		return rc;
	}
	*out = p.r;
	return 0;
}

/* The whole file, with room to spare so that a file too big shows. */
static int
read_file(const char *path, char **text, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* The size is a hint for one allocation; read decides. */
	struct stat st = {0};
	(void)fstat(fd, &st);
	int rc = st.st_size > SERVE_RULES_FILE_MAX ? -EFBIG : 0;
	size_t cap = 0, n = 0;
	size_t hint = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
	char *buf = NULL;
	while (rc == 0) {
		char *b = rules_grow(buf, &cap, n < hint ? hint : n + 1, 1);
		if (b == NULL) {
			rc = -ENOMEM;
			break;
		}
		buf = b;
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0 && errno != EINTR)
			rc = -errno;
		if (got == 0)
			break;
		n += got > 0 ? (size_t)got : 0;
		if (n > SERVE_RULES_FILE_MAX)
			rc = -EFBIG;
	}
	close(fd);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*text = buf;
	*len = n;
	return 0;
}

int
serve_rules_load(
    const char *path, struct serve_rules **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	*out = NULL;
	int rc = read_file(path, &text, &len);
	if (rc < 0) {
		if (errlen > 0) {
			size_t n = put_name(err, errlen, path);
			snprintf(err + n, errlen - n, ": %s",
			    rc == -EFBIG ? "file too big (more than 64 MiB)"
					 : strerror(-rc));
		}
		return rc;
	}
	rc = serve_rules_parse(path, text, len, out, err, errlen);
	free(text);
	return rc;
}

size_t
serve_rules_count(const struct serve_rules *r)
{
	return r != NULL ? r->nrules : 0;
}

const struct serve_rule *
serve_rules_match(const struct serve_rules *r, const struct pbx_addr *a)
{
	if (r == NULL || a == NULL)
		return NULL;
	int32_t i;
	if (a->u.sa.sa_family == AF_INET && a->len >= sizeof a->u.in4) {
		const void *b = &a->u.in4.sin_addr;
		i = rules_trie_lookup(
		    r, RULES_ROOT4, rules_key_from(AF_INET, b), 32);
	} else if (a->u.sa.sa_family == AF_INET6 && a->len >= sizeof a->u.in6) {
		const unsigned char *b = a->u.in6.sin6_addr.s6_addr;
		struct rules_key k = rules_key_from(AF_INET6, b);
		i = rules_key_is_mapped(k)
			? rules_trie_lookup(r, RULES_ROOT4,
			      rules_key_from(AF_INET, b + 12), 32)
			: rules_trie_lookup(r, RULES_ROOT6, k, 128);
	} else {
		return NULL;
	}
	return i >= 0 ? &r->rules[i] : NULL;
}

bool
serve_rule_allows(const struct serve_rule *rule)
{
	return rule->allow;
}

size_t
serve_rule_nvars(const struct serve_rule *rule)
{
	return rule->nvars;
}

const char *
serve_rule_var(const struct serve_rule *rule, size_t i)
{
	return i < rule->nvars ? rule->vars[i] : NULL;
}

unsigned
serve_rule_line(const struct serve_rule *rule)
{
	return rule->line;
}
