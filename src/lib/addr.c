/* SPDX-License-Identifier: MIT */
/* addr.c: parse, resolve and format TCP endpoints (the "phone number"). */
#include "internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

static int
parse_fail(struct pbx_parse_error *err, const char *part, const char *reason,
    size_t offset, size_t length)
{
	if (err != NULL) {
		err->part = part;
		err->reason = reason;
		err->offset = offset;
		err->length = length;
	}
	return -EINVAL;
}

/*
 * Strict decimal port: digits only, no sign, no leading zero, <= 65535.
 * strtoul would accept " 80", "+80" and wrap huge values, hence by hand.
 */
static int
parse_port(const char *s, size_t len, uint16_t *port, const char **reason)
{
	unsigned long v = 0;

	if (len == 0) {
		*reason = "is missing";
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i])) {
			*reason = "is not a number";
			return -EINVAL;
		}
	}
	if (len > 1 && s[0] == '0') {
		*reason = "has a leading zero";
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		v = v * 10 + (unsigned long)(s[i] - '0');
		if (v > 65535) {
			*reason = "is out of range 0-65535";
			return -EINVAL;
		}
	}
	*port = (uint16_t)v;
	return 0;
}

/* One label of a number as inet_aton reads it: decimal, octal or 0x hex. */
static bool
numeric_label(const char *s, size_t len)
{
	size_t i = 0;

	if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		for (i = 2; i < len; i++)
			if (!isxdigit((unsigned char)s[i]))
				return false;
		return true;
	}
	for (; i < len; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

/*
 * Text made only of labels of digits or 0x hex (empty ones too, as in
 * "1..2" or "1.2.3.4."), with at least one digit: what inet_aton and so
 * getaddrinfo, which falls back to it for names, may read as an IPv4
 * number (127.1, 0177.0.0.1, 0x7f000001 and 2130706433 are 127.0.0.1).
 * Such text is a dotted quad or nothing: never a name.
 */
static bool
numeric_text(const char *s)
{
	bool digit = false;

	for (const char *p = s;; p++) {
		size_t len = strcspn(p, ".");
		if (!numeric_label(p, len))
			return false;
		digit = digit || len > 0;
		p += len;
		if (*p == '\0')
			return digit;
	}
}

/* Host names: letters, digits, '-', '_' and '.', as DNS and /etc/hosts. */
static bool
valid_hostname(const char *s)
{
	if (*s == '\0' || *s == '.' || *s == '-')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' &&
		    *s != '_')
			return false;
	return true;
}

/*
 * What the resolver may be asked about: a name, never a number. inet_aton
 * is asked too, so that no form of its own (any it may learn) slips by.
 */
static bool
is_name(const char *s)
{
	struct in_addr a;

	return valid_hostname(s) && !numeric_text(s) && inet_aton(s, &a) == 0;
}

static const char not_dotted_quad[] =
    "is not a dotted-quad IPv4 address (four decimals 0-255, no leading zeros)";

static int
check_host(
    size_t off, const char *host, bool bracketed, struct pbx_parse_error *err)
{
	struct pbx_addr a;
	size_t len = strlen(host);

	if (bracketed) {
		if (strchr(host, ':') == NULL || pbx_addr_parse_ip(host, 0, &a))
			return parse_fail(err, "host",
			    "is not a valid IPv6 address", off, len);
		return 0;
	}
	if (strchr(host, ':') != NULL)
		return parse_fail(
		    err, "host", "is IPv6 and must be in brackets", off, len);
	if (numeric_text(host)) {
		if (pbx_addr_parse_ip(host, 0, &a) != 0)
			return parse_fail(
			    err, "host", not_dotted_quad, off, len);
		return 0;
	}
	if (!valid_hostname(host))
		return parse_fail(
		    err, "host", "is not a valid host name", off, len);
	if (!is_name(host))
		return parse_fail(err, "host", not_dotted_quad, off, len);
	return 0;
}

/* Split the text at the port colon: find where the host ends. */
static int
split_host(const char *text, size_t *host_off, size_t *host_len,
    const char **rest, bool *bracketed, struct pbx_parse_error *err)
{
	size_t n = strlen(text);

	*bracketed = text[0] == '[';
	if (*bracketed) {
		const char *close = strchr(text, ']');
		if (close == NULL)
			return parse_fail(
			    err, "address", "has no closing bracket", 0, n);
		*host_off = 1;
		*host_len = (size_t)(close - text) - 1;
		*rest = close + 1;
		if (**rest != '\0' && **rest != ':')
			return parse_fail(err, "address",
			    "has text after ']' that is not ':PORT'", 0, n);
		return 0;
	}
	const char *colon = strrchr(text, ':');
	*host_off = 0;
	*host_len = colon != NULL ? (size_t)(colon - text) : n;
	*rest = colon != NULL ? colon : text + n;
	return 0;
}

int
pbx_hostport_parse(const char *text, int flags, struct pbx_hostport *out,
    struct pbx_parse_error *err)
{
	size_t host_off, host_len;
	const char *rest, *reason;
	bool bracketed;
	int r;

	memset(out, 0, sizeof *out);
	if (text == NULL || text[0] == '\0')
		return parse_fail(err, "address", "is empty", 0, 0);
	r = split_host(text, &host_off, &host_len, &rest, &bracketed, err);
	if (r < 0)
		return r;
	if (host_len >= sizeof out->host)
		return parse_fail(
		    err, "host", "is too long", host_off, host_len);
	if (bracketed && host_len == 0)
		return parse_fail(err, "host", "is empty", host_off, 0);
	memcpy(out->host, text + host_off, host_len);
	out->host[host_len] = '\0';
	out->bracketed = bracketed;
	if (host_len > 0) {
		r = check_host(host_off, out->host, bracketed, err);
		if (r < 0)
			return r;
	}
	if (*rest == '\0') {
		if (flags & PBX_PARSE_PORT_OPTIONAL)
			return 0;
		return parse_fail(err, "port", "is missing", strlen(text), 0);
	}
	size_t port_off = (size_t)(rest + 1 - text);
	r = parse_port(rest + 1, strlen(rest + 1), &out->port, &reason);
	if (r < 0)
		return parse_fail(
		    err, "port", reason, port_off, strlen(rest + 1));
	out->has_port = true;
	return 0;
}

int
pbx_addr_parse_ip(const char *ip, uint16_t port, struct pbx_addr *out)
{
	memset(out, 0, sizeof *out);
	if (strchr(ip, ':') == NULL) {
		if (inet_pton(AF_INET, ip, &out->u.in4.sin_addr) != 1)
			return -EINVAL;
		out->u.in4.sin_family = AF_INET;
		out->u.in4.sin_port = htons(port);
		out->len = sizeof out->u.in4;
		return 0;
	}
	char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
	const char *pct = strchr(ip, '%');
	size_t alen = pct != NULL ? (size_t)(pct - ip) : strlen(ip);
	if (alen >= INET6_ADDRSTRLEN)
		return -EINVAL;
	memcpy(buf, ip, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET6, buf, &out->u.in6.sin6_addr) != 1)
		return -EINVAL;
	if (pct != NULL) {
		unsigned idx = if_nametoindex(pct + 1);
		if (idx == 0)
			return -EINVAL;
		out->u.in6.sin6_scope_id = idx;
	}
	out->u.in6.sin6_family = AF_INET6;
	out->u.in6.sin6_port = htons(port);
	out->len = sizeof out->u.in6;
	return 0;
}

static int
eai_to_pbx(int eai)
{
	switch (eai) {
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
		return PBX_EAI_NONAME;
	case EAI_AGAIN:
		return PBX_EAI_AGAIN;
	case EAI_FAIL:
		return PBX_EAI_FAIL;
	case EAI_FAMILY:
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY:
#endif
		return PBX_EAI_FAMILY;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_SYSTEM:
		return errno != 0 ? -errno : PBX_EAI_OTHER;
	default:
		return PBX_EAI_OTHER;
	}
}

static int
resolve_any(uint16_t port, struct pbx_addr *out, size_t max)
{
	size_t n = 0;

	memset(out, 0, sizeof *out * max);
	out[n].u.in6.sin6_family = AF_INET6;
	out[n].u.in6.sin6_addr = in6addr_any;
	out[n].u.in6.sin6_port = htons(port);
	out[n].len = sizeof out[n].u.in6;
	n++;
	if (n < max) {
		out[n].u.in4.sin_family = AF_INET;
		out[n].u.in4.sin_addr.s_addr = htonl(INADDR_ANY);
		out[n].u.in4.sin_port = htons(port);
		out[n].len = sizeof out[n].u.in4;
		n++;
	}
	return (int)n;
}

static int
resolve_name(const struct pbx_hostport *hp, struct pbx_addr *out, size_t max)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_protocol = IPPROTO_TCP,
	    .ai_flags = AI_ADDRCONFIG,
	};
	struct addrinfo *res, *ai;
	size_t n = 0;

	int r = getaddrinfo(hp->host, NULL, &hints, &res);
	if (r != 0)
		return eai_to_pbx(r);
	for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if ((size_t)ai->ai_addrlen > sizeof out[n].u)
			continue;
		memset(&out[n], 0, sizeof out[n]);
		memcpy(&out[n].u, ai->ai_addr, ai->ai_addrlen);
		out[n].len = ai->ai_addrlen;
		pbx_addr_set_port(&out[n], hp->port);
		n++;
	}
	freeaddrinfo(res);
	return n > 0 ? (int)n : PBX_EAI_NONAME;
}

int
pbx_addr_resolve(
    const struct pbx_hostport *hp, int flags, struct pbx_addr *out, size_t max)
{
	if (max == 0)
		return -EINVAL;
	if (hp->host[0] == '\0') {
		if (!(flags & PBX_RESOLVE_PASSIVE))
			return -EINVAL;
		return resolve_any(hp->port, out, max);
	}
	if (pbx_addr_parse_ip(hp->host, hp->port, out) == 0)
		return 1;
	/* As pbx_hostport_parse decides: a host that is not an IP address
	 * is a name or nothing (127.1 is not 127.0.0.1). */
	if (hp->bracketed || !is_name(hp->host))
		return -EINVAL;
	if (flags & PBX_RESOLVE_NUMERIC)
		return PBX_EAI_NONAME;
	return resolve_name(hp, out, max);
}

int
pbx_addr_family(const struct pbx_addr *a)
{
	return a->u.sa.sa_family;
}

uint16_t
pbx_addr_port(const struct pbx_addr *a)
{
	if (a->u.sa.sa_family == AF_INET6)
		return ntohs(a->u.in6.sin6_port);
	return ntohs(a->u.in4.sin_port);
}

void
pbx_addr_set_port(struct pbx_addr *a, uint16_t port)
{
	if (a->u.sa.sa_family == AF_INET6)
		a->u.in6.sin6_port = htons(port);
	else
		a->u.in4.sin_port = htons(port);
}

bool
pbx_addr_is_any(const struct pbx_addr *a)
{
	if (a->u.sa.sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
	return a->u.in4.sin_addr.s_addr == htonl(INADDR_ANY);
}

/*
 * The IP as text. glibc's inet_ntop already follows RFC 5952 (lowercase,
 * longest zero run compressed, a lone zero group kept); an IPv4-mapped
 * address is shown as the IPv4 address it carries, as a dual-stack
 * listener's peers are IPv4 callers.
 */
int
pbx_addr_format_ip(const struct pbx_addr *a, char *buf, size_t size)
{
	char tmp[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	const void *src;
	int family = a->u.sa.sa_family;

	if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
		src = &a->u.in6.sin6_addr.s6_addr[12];
		family = AF_INET;
	} else if (family == AF_INET6) {
		src = &a->u.in6.sin6_addr;
	} else if (family == AF_INET) {
		src = &a->u.in4.sin_addr;
	} else {
		return -EAFNOSUPPORT;
	}
	if (inet_ntop(family, src, tmp, sizeof tmp) == NULL)
		return -errno;
	size_t len = strlen(tmp);
	if (family == AF_INET6 && a->u.in6.sin6_scope_id != 0) {
		char ifname[IF_NAMESIZE];
		tmp[len++] = '%';
		if (if_indextoname(a->u.in6.sin6_scope_id, ifname) != NULL)
			len += (size_t)snprintf(
			    tmp + len, sizeof tmp - len, "%s", ifname);
		else
			len += (size_t)snprintf(tmp + len, sizeof tmp - len,
			    "%u", (unsigned)a->u.in6.sin6_scope_id);
	}
	if (len + 1 > size)
		return -ENOSPC;
	memcpy(buf, tmp, len + 1);
	return (int)len;
}

int
pbx_addr_format(const struct pbx_addr *a, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	int r = pbx_addr_format_ip(a, ip, sizeof ip);
	if (r < 0)
		return r;
	bool brackets = strchr(ip, ':') != NULL;
	int n = snprintf(buf, size, brackets ? "[%s]:%u" : "%s:%u", ip,
	    (unsigned)pbx_addr_port(a));
	if (n < 0 || (size_t)n >= size)
		return -ENOSPC;
	return n;
}

static int
sockname(int fd, struct pbx_addr *out, bool peer)
{
	socklen_t len = sizeof out->u;

	memset(out, 0, sizeof *out);
	int r = peer ? getpeername(fd, &out->u.sa, &len)
		     : getsockname(fd, &out->u.sa, &len);
	if (r < 0)
		return -errno;
	out->len = len;
	return 0;
}

int
pbx_addr_local(int fd, struct pbx_addr *out)
{
	return sockname(fd, out, false);
}

int
pbx_addr_remote(int fd, struct pbx_addr *out)
{
	return sockname(fd, out, true);
}

const char *
pbx_strerror(int err)
{
	switch (err) {
	case PBX_EAI_NONAME:
		return "Name or service not known";
	case PBX_EAI_AGAIN:
		return "Temporary failure in name resolution";
	case PBX_EAI_FAIL:
		return "Non-recoverable failure in name resolution";
	case PBX_EAI_FAMILY:
		return "No address of the requested family";
	case PBX_EAI_OTHER:
		return "Name resolution failed";
	default:
		break;
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return err == 0 ? "Success" : "Unknown error";
}
