/* SPDX-License-Identifier: MIT */
/*
 * rules.h: access rules for `pbx serve --rules FILE`: a text of CIDR
 * prefixes, each allowing or denying the callers it covers and setting
 * variables for the program, answered by longest-prefix match.
 *
 * One rule per line, fields separated by spaces or tabs:
 *
 *   CIDR allow|deny [VAR=value ...]    # a comment
 *
 *   CIDR     an IPv4 address in dotted-quad decimal (no leading zeros) or
 *            an IPv6 address (RFC 4291, no brackets, no %scope), with an
 *            optional /N (0-32 or 0-128; without it, the full length).
 *            The bits past N must be zero; a prefix may occur only once.
 *   VAR      [A-Za-z_][A-Za-z0-9_]*, at most once per rule; at most 64
 *            variables per rule.
 *   value    bare (no space, tab or '"'; may not start with '#'), or
 *            "quoted" with \" and \\ the only escapes; may be empty.
 *
 * '#' at the start of a line or after a space or tab starts a comment.
 * Blank lines are fine, CRLF line endings too, and the last line needs no
 * newline. A line may hold at most 64 KiB. Control bytes other than tab
 * (and the CR of CRLF) are refused anywhere, comments included, so a
 * binary file is not mistaken for rules.
 *
 * Lookup: the longest prefix that covers the caller decides; a caller no
 * rule covers has no rule (NULL), which the server treats as deny. The
 * families are separate: 0.0.0.0/0 covers every IPv4 caller and ::/0
 * every IPv6 caller. An IPv4-mapped caller (::ffff:a.b.c.d, as a
 * dual-stack listener reports IPv4 peers) is looked up as a.b.c.d, so an
 * IPv6 rule inside ::ffff:0:0/96 could never match; such rules are refused
 * with a message naming the IPv4 rule to write instead.
 *
 * The rule set is immutable once parsed, so any number of threads may
 * look it up at once; a reload parses a new set and swaps the pointer.
 * Lookup walks a path-compressed binary trie: at most 33 (IPv4) or 129
 * (IPv6) steps of constant work, however many rules there are. This
 * module never logs: errors come back as one line in a caller's buffer.
 */
#ifndef SERVE_RULES_H
#define SERVE_RULES_H

#include "pbx.h"

#include <stdbool.h>
#include <stddef.h>

/* Limits of the format (see above) and of serve_rules_load. */
#define SERVE_RULES_LINE_MAX 65536              /* bytes, without newline */
#define SERVE_RULES_VARS_MAX 64                 /* variables per rule */
#define SERVE_RULES_FILE_MAX (64 * 1024 * 1024) /* bytes, for _load */

struct serve_rules; /* a parsed rule set; opaque, immutable */
struct serve_rule;  /* one rule of a set, owned by the set */

/*
 * Parse len bytes of text (need not be NUL-terminated; a NUL byte is an
 * error) into a new rule set in *out, which the caller frees with
 * serve_rules_free. name is used only in messages (the file name).
 * Returns 0, -EINVAL for a bad text or -ENOMEM; on failure *out is NULL
 * and err (unless errlen is 0) holds one line without a newline:
 * "NAME:LINE:COL: what is wrong 'the bad text'", COL the 1-based byte
 * column of the bad token, the quoted text cut to 40 bytes with "..." and
 * every byte that is not printable ASCII shown as '?'.
 */
int serve_rules_parse(const char *name, const char *text, size_t len,
    struct serve_rules **out, char *err, size_t errlen);

/*
 * serve_rules_parse on the whole file at path (read with open and read;
 * at most SERVE_RULES_FILE_MAX bytes), with path as the name. A file that
 * cannot be read gives -errno and "PATH: strerror" in err; one that is too
 * big gives -EFBIG.
 */
int serve_rules_load(
    const char *path, struct serve_rules **out, char *err, size_t errlen);

/* Free a rule set and every rule in it (NULL is fine). */
void serve_rules_free(struct serve_rules *r);

/* The number of rules in the set (0 for an empty or comments-only text). */
size_t serve_rules_count(const struct serve_rules *r);

/*
 * The rule with the longest prefix covering a's IP address (its port is
 * ignored), or NULL when none does, or when r is NULL or a holds no IPv4
 * or IPv6 address. The rule is borrowed from r: valid until r is freed.
 */
const struct serve_rule *serve_rules_match(
    const struct serve_rules *r, const struct pbx_addr *a);

/* True for "allow", false for "deny". */
bool serve_rule_allows(const struct serve_rule *rule);

/* The variables of a rule, in the order written: "VAR=value" (escapes
 * decoded), NUL-terminated, borrowed from the set; i < nvars. */
size_t serve_rule_nvars(const struct serve_rule *rule);
const char *serve_rule_var(const struct serve_rule *rule, size_t i);

/* The rule's line in the text (from 1), for a log line saying which rule
 * decided. */
unsigned serve_rule_line(const struct serve_rule *rule);

#endif /* SERVE_RULES_H */
