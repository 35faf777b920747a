/* SPDX-License-Identifier: MIT */
/*
 * proxy_header.c: the PROXY protocol header, parsed strictly from a
 * growing prefix of what the peer sent (proxy_header_build.c builds one).
 */
#include "proxy_header_build.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static const char v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
const uint8_t proxy_v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

enum {
	PP2_TYPE_AUTHORITY = 0x02,
	PP2_TYPE_CRC32C = 0x03,
	PP2_TYPE_UNIQUE_ID = 0x05,
	PP2_TYPE_SSL = 0x20,
	PP2_SUBTYPE_SSL_VERSION = 0x21,
};

/* Fields of a v1 line in order, after "PROXY ". */
enum { F_PROTO, F_SRC, F_DST, F_SPORT, F_DPORT, F_COUNT };

/* A v1 line's fields as they are checked, one at a time. */
struct v1_line {
	int family; /* AF_INET, AF_INET6, or AF_UNSPEC for UNKNOWN */
	uint8_t ip[2][16];
	uint16_t port[2];
};

static ssize_t
reject(const char **why, int err, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return err;
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void
set_addr(struct pbx_addr *a, int family, const uint8_t *ip, uint16_t port)
{
	memset(a, 0, sizeof *a);
	if (family == AF_INET) {
		a->u.in4.sin_family = AF_INET;
		a->u.in4.sin_port = htons(port);
		memcpy(&a->u.in4.sin_addr, ip, 4);
		a->len = sizeof a->u.in4;
	} else {
		a->u.in6.sin6_family = AF_INET6;
		a->u.in6.sin6_port = htons(port);
		memcpy(&a->u.in6.sin6_addr, ip, 16);
		a->len = sizeof a->u.in6;
	}
}

/* ---- v1 ---- */

/*
 * Where the line stops: 1 at its CRLF (*end at the CR); 0 where the bytes
 * seen so far stop (*end at n, or at a CR whose LF may still come); -1 at
 * a byte no v1 line can hold there (*end at it, *reason says why). The
 * fields before *end are checked first, so the reason given is always
 * the leftmost fault, however the bytes were split on their way in.
 */
static int
v1_find_end(const uint8_t *b, size_t n, size_t *end, const char **reason)
{
	size_t lim = n < PROXY_V1_MAX ? n : PROXY_V1_MAX, i;
	for (i = 0; i < lim && b[i] != '\r'; i++) {
		*end = i;
		if (b[i] == '\n') {
			*reason = "v1 header: LF without a CR before it";
			return -1;
		}
		if (b[i] < 0x20 || b[i] > 0x7e) {
			*reason =
			    "v1 header: a byte that is not printable US-ASCII";
			return -1;
		}
	}
	*end = i;
	/* A CR at byte 107 (i == 106) has no room for its LF. */
	if (i < lim && i + 1 < PROXY_V1_MAX) {
		if (i + 1 == n)
			return 0;
		if (b[i + 1] == '\n')
			return 1;
		*reason = "v1 header: CR not followed by LF";
		return -1;
	}
	*reason = "v1 header: no CRLF within 107 bytes";
	return n >= PROXY_V1_MAX ? -1 : 0;
}

static bool
is_prefix(const uint8_t *s, size_t len, const char *of)
{
	return len <= strlen(of) && memcmp(s, of, len) == 0;
}

static bool
is_word(const uint8_t *s, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(s, word, len) == 0;
}

/* Decimal 0-65535 without leading zeros, or (partial) a prefix of one. */
static bool
v1_port(const uint8_t *s, size_t len, bool partial, uint16_t *port)
{
	unsigned v = 0;
	if (len == 0)
		return partial;
	if (len > 5 || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*port = (uint16_t)v;
	return v <= 65535;
}

/*
 * An address field. A partial one is only checked for what no address of
 * its family can hold (a wrong byte, too many bytes), so that a prefix of
 * a valid line is never refused.
 */
static bool
v1_ip(const uint8_t *s, size_t len, bool partial, int family, uint8_t *ip)
{
	char text[INET6_ADDRSTRLEN];
	size_t max =
	    family == AF_INET ? INET_ADDRSTRLEN - 1 : INET6_ADDRSTRLEN - 1;
	const char *ok =
	    family == AF_INET ? "0123456789." : "0123456789abcdefABCDEF:.";
	if (len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (strchr(ok, s[i]) == NULL)
			return false;
	}
	if (partial)
		return true;
	memcpy(text, s, len);
	text[len] = '\0';
	/* glibc's inet_pton is strict: four decimal octets, no leading
	 * zeros, no shorthand (the unit tests pin this). */
	return inet_pton(family, text, ip) == 1;
}

static const char *const v1_bad_addr[2][2] = {
    {"v1 header: source address is not a TCP4 address",
	"v1 header: destination address is not a TCP4 address"},
    {"v1 header: source address is not a TCP6 address",
	"v1 header: destination address is not a TCP6 address"},
};

/* The protocol field: TCP4, TCP6 or UNKNOWN (or a prefix of one). */
static bool
v1_proto(const uint8_t *s, size_t len, bool partial, int *family)
{
	if (partial)
		return is_prefix(s, len, "TCP4") || is_prefix(s, len, "TCP6") ||
		       is_prefix(s, len, "UNKNOWN");
	if (is_word(s, len, "TCP4"))
		*family = AF_INET;
	else if (is_word(s, len, "TCP6"))
		*family = AF_INET6;
	else if (!is_word(s, len, "UNKNOWN"))
		return false;
	return true;
}

/* Checks field f (whole, or the partial last one) into l. */
static ssize_t
v1_field(const uint8_t *s, size_t len, int f, bool partial, struct v1_line *l,
    const char **why)
{
	if (f == F_PROTO && !v1_proto(s, len, partial, &l->family))
		return reject(why, -EINVAL,
		    "v1 header: protocol is not TCP4, TCP6 or UNKNOWN");
	if ((f == F_SRC || f == F_DST) &&
	    !v1_ip(s, len, partial, l->family, l->ip[f - F_SRC]))
		return reject(why, -EINVAL,
		    v1_bad_addr[l->family == AF_INET6][f - F_SRC]);
	if (f == F_SPORT && !v1_port(s, len, partial, &l->port[0]))
		return reject(why, -EINVAL,
		    "v1 header: source port is not 0-65535 without leading zeros");
	if (f == F_DPORT && !v1_port(s, len, partial, &l->port[1]))
		return reject(why, -EINVAL,
		    "v1 header: destination port is not 0-65535 without leading zeros");
	return 0;
}

/*
 * Checks the fields in b[6..end): all of the line when complete (end is
 * at the CR), else as far as it goes. Returns 1 for a complete UNKNOWN
 * line (the rest is ignored, as the spec says), 0 to go on, or -EINVAL.
 */
static ssize_t
v1_fields(const uint8_t *b, size_t end, bool complete, struct v1_line *l,
    const char **why)
{
	size_t p = sizeof v1_sig;
	for (int f = 0;; f++) {
		size_t q = p;
		while (q < end && b[q] != ' ')
			q++;
		bool whole = q < end || complete;
		/* A trailing space and a sixth field both start so. */
		if (f == F_COUNT)
			return reject(why, -EINVAL,
			    "v1 header: a space after the destination port");
		if (whole && q == p)
			return reject(why, -EINVAL,
			    q < end ? "v1 header: two spaces in a row"
				    : "v1 header: a space before CRLF");
		ssize_t r = v1_field(b + p, q - p, f, !whole, l, why);
		if (r < 0 || !whole)
			return r;
		if (f == F_PROTO && l->family == AF_UNSPEC)
			return 1;
		if (q == end)
			return f + 1 == F_COUNT
				   ? 0
				   : reject(why, -EINVAL,
					 "v1 header: too few fields");
		p = q + 1;
	}
}

static ssize_t
parse_v1(const uint8_t *b, size_t n, struct proxy_header *out, const char **why)
{
	size_t end;
	const char *reason = NULL;
	struct v1_line l = {.family = AF_UNSPEC};
	int found = v1_find_end(b, n, &end, &reason);
	ssize_t r = v1_fields(b, end, found == 1, &l, why);
	if (r < 0)
		return r;
	if (found < 0)
		return reject(why, -EINVAL, reason);
	if (found == 0)
		return 0;
	memset(out, 0, sizeof *out);
	out->version = 1;
	out->len = end + 2;
	out->local = l.family == AF_UNSPEC;
	if (!out->local) {
		set_addr(&out->source, l.family, l.ip[0], l.port[0]);
		set_addr(&out->dest, l.family, l.ip[1], l.port[1]);
	}
	return (ssize_t)out->len;
}

/* ---- v2 ---- */

/* CRC-32C (Castagnoli, reflected), bit by bit: headers are short. */
static uint32_t
crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (crc & 1u ? 0x82f63b78u : 0);
	}
	return crc;
}

/* The address block's size for a PROXY command's family byte, or -1. */
static int
v2_block(uint8_t fam, const char **reason)
{
	switch (fam) {
	case 0x00:
		return 0;
	case 0x11:
		return 12;
	case 0x21:
		return 36;
	case 0x31:
		return 216;
	}
	if (fam >> 4 > 3)
		*reason = "v2 header: unknown address family";
	else if ((fam & 0xf) > 2)
		*reason = "v2 header: unknown transport protocol";
	else if ((fam & 0xf) == 2)
		*reason = "v2 header: a datagram transport (UDP), not TCP";
	else
		*reason =
		    "v2 header: a family without a transport or a transport without a family";
	return -1;
}

/*
 * Checks the fixed 16 bytes as far as they have arrived, so that a bad
 * version, command, family or length is refused at once. Returns 1 with
 * *len when all 16 are good, 0 for more, or -EINVAL.
 */
static ssize_t
v2_fixed(const uint8_t *b, size_t n, size_t *len, const char **why)
{
	const char *reason = NULL;
	int block = 0;
	if (n > 12 && b[12] >> 4 != 2)
		return reject(why, -EINVAL, "v2 header: version is not 2");
	if (n > 12 && (b[12] & 0xf) > V2_PROXY)
		return reject(
		    why, -EINVAL, "v2 header: command is not LOCAL or PROXY");
	/* LOCAL discards "the protocol block including the family, which
	 * is ignored" (the spec): only a PROXY command's family counts. */
	if (n > 13 && (b[12] & 0xf) == V2_PROXY)
		block = v2_block(b[13], &reason);
	if (block < 0)
		return reject(why, -EINVAL, reason);
	if (n < V2_FIXED)
		return 0;
	*len = V2_FIXED + get16(b + 14);
	if (*len > PROXY_HEADER_MAX)
		return reject(
		    why, -EINVAL, "v2 header: longer than 4096 bytes");
	if (*len < V2_FIXED + (size_t)block)
		return reject(why, -EINVAL,
		    "v2 header: length too short for the address family");
	return 1;
}

/*
 * The next TLV in b[*p..end): 1 with its type, value offset and length,
 * 0 at the end, -1 truncated in its 3-byte head, -2 running past end.
 */
static int
tlv_next(const uint8_t *b, size_t *p, size_t end, uint8_t *type, size_t *v,
    size_t *len)
{
	if (*p == end)
		return 0;
	if (end - *p < 3)
		return -1;
	*type = b[*p];
	*len = get16(b + *p + 1);
	if (*len > end - *p - 3)
		return -2;
	*v = *p + 3;
	*p = *v + *len;
	return 1;
}

/* Copies a text value: false if it holds a NUL or does not fit. */
static bool
copy_text(char *dst, size_t size, const uint8_t *s, size_t len)
{
	if (len >= size || memchr(s, '\0', len) != NULL)
		return false;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return true;
}

/* PP2_TYPE_SSL: client flags, verify, then sub-TLVs inside its value. */
static ssize_t
v2_ssl(const uint8_t *b, size_t v, size_t len, struct proxy_header *out,
    const char **why)
{
	size_t p = v + 5, sv, slen;
	uint8_t type;
	int r;
	if (len < 5)
		return reject(
		    why, -EINVAL, "v2 header: SSL TLV shorter than 5 bytes");
	out->ssl.present = true;
	out->ssl.client = b[v];
	out->ssl.verify = get32(b + v + 1);
	for (;;) {
		r = tlv_next(b, &p, v + len, &type, &sv, &slen);
		if (r <= 0)
			break;
		if (type != PP2_SUBTYPE_SSL_VERSION)
			continue;
		if (!copy_text(out->ssl.version, sizeof out->ssl.version,
			b + sv, slen))
			return reject(why, -EINVAL,
			    "v2 header: SSL version longer than 31 bytes or with a NUL");
	}
	if (r < 0)
		return reject(why, -EINVAL,
		    "v2 header: SSL sub-TLV does not fit in the SSL TLV");
	return 0;
}

static ssize_t
v2_crc(const uint8_t *b, size_t v, size_t len, size_t total, const char **why)
{
	static const uint8_t zero[4];
	if (len != 4)
		return reject(
		    why, -EINVAL, "v2 header: CRC32C TLV is not 4 bytes long");
	uint32_t crc = crc32c(0xffffffffu, b, v);
	crc = crc32c(crc, zero, sizeof zero);
	crc = crc32c(crc, b + v + 4, total - v - 4);
	if ((crc ^ 0xffffffffu) != get32(b + v))
		return reject(why, -EINVAL, "v2 header: CRC32C does not match");
	return 0;
}

/* One TLV; the types we do not use (ALPN, NOOP, NETNS, ...) are skipped. */
static ssize_t
v2_tlv(const uint8_t *b, uint8_t type, size_t v, size_t len,
    struct proxy_header *out, const char **why)
{
	switch (type) {
	case PP2_TYPE_AUTHORITY:
		if (!copy_text(
			out->authority, sizeof out->authority, b + v, len))
			return reject(why, -EINVAL,
			    "v2 header: AUTHORITY longer than 255 bytes or with a NUL");
		return 0;
	case PP2_TYPE_CRC32C:
		return v2_crc(b, v, len, out->len, why);
	case PP2_TYPE_UNIQUE_ID:
		if (len > PROXY_UNIQUE_ID_MAX)
			return reject(why, -EINVAL,
			    "v2 header: UNIQUE_ID longer than 128 bytes");
		memcpy(out->unique_id, b + v, len);
		out->unique_id_len = len;
		return 0;
	case PP2_TYPE_SSL:
		return v2_ssl(b, v, len, out, why);
	default:
		return 0;
	}
}

/*
 * The types we keep may appear once each: with two AUTHORITY values the
 * handler and a reader of the log could disagree about which one counted.
 */
static uint32_t
once_bit(uint8_t type)
{
	switch (type) {
	case PP2_TYPE_AUTHORITY:
		return 1u << 0;
	case PP2_TYPE_CRC32C:
		return 1u << 1;
	case PP2_TYPE_UNIQUE_ID:
		return 1u << 2;
	case PP2_TYPE_SSL:
		return 1u << 3;
	default:
		return 0;
	}
}

/* The TLVs in b[p..out->len), after the address block. */
static ssize_t
v2_tlvs(const uint8_t *b, size_t p, struct proxy_header *out, const char **why)
{
	uint32_t seen = 0;
	size_t v, len;
	uint8_t type;
	int r;
	for (;;) {
		r = tlv_next(b, &p, out->len, &type, &v, &len);
		if (r <= 0)
			break;
		if (seen & once_bit(type))
			return reject(why, -EINVAL,
			    "v2 header: a TLV that may appear once appears twice");
		seen |= once_bit(type);
		ssize_t e = v2_tlv(b, type, v, len, out, why);
		if (e < 0)
			return e;
	}
	if (r == -1)
		return reject(why, -EINVAL,
		    "v2 header: TLV truncated in its type and length");
	if (r == -2)
		return reject(why, -EINVAL,
		    "v2 header: TLV runs past the end of the header");
	return 0;
}

static ssize_t
parse_v2(const uint8_t *b, size_t n, struct proxy_header *out, const char **why)
{
	size_t total;
	ssize_t r = v2_fixed(b, n, &total, why);
	if (r <= 0 || n < total)
		return r < 0 ? r : 0;
	memset(out, 0, sizeof *out);
	out->version = 2;
	out->len = total;
	out->local = true;
	if ((b[12] & 0xf) == V2_LOCAL)
		return (ssize_t)total;
	const char *unused;
	int block = v2_block(b[13], &unused);
	if (b[13] == 0x11 || b[13] == 0x21) {
		int fam = b[13] == 0x11 ? AF_INET : AF_INET6;
		size_t ipn = fam == AF_INET ? 4 : 16;
		const uint8_t *a = b + V2_FIXED;
		out->local = false;
		set_addr(&out->source, fam, a, get16(a + 2 * ipn));
		set_addr(&out->dest, fam, a + ipn, get16(a + 2 * ipn + 2));
	}
	r = v2_tlvs(b, V2_FIXED + (size_t)block, out, why);
	return r < 0 ? r : (ssize_t)total;
}

/* ---- both ---- */

ssize_t
proxy_header_parse(const void *buf, size_t n, unsigned versions,
    struct proxy_header *out, const char **why)
{
	const uint8_t *b = buf;
	if (why != NULL)
		*why = NULL;
	if ((versions & (PROXY_V1 | PROXY_V2)) == 0)
		return reject(
		    why, -EINVAL, "no PROXY protocol version accepted");
	if (n == 0)
		return 0;
	/* The first byte tells the versions apart: 'P' or CR. */
	int version = b[0] == v1_sig[0] ? 1 : 2;
	const void *sig = version == 1 ? (const void *)v1_sig : proxy_v2_sig;
	size_t siglen = version == 1 ? sizeof v1_sig : sizeof proxy_v2_sig;
	if (memcmp(b, sig, n < siglen ? n : siglen) != 0)
		return reject(why, -EINVAL, "not a PROXY protocol header");
	if (n < siglen)
		return 0;
	if (!(versions & (version == 1 ? PROXY_V1 : PROXY_V2)))
		return reject(why, -EPROTONOSUPPORT,
		    version == 1 ? "a v1 header where only v2 is accepted"
				 : "a v2 header where only v1 is accepted");
	return version == 1 ? parse_v1(b, n, out, why)
			    : parse_v2(b, n, out, why);
}
