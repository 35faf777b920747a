/* SPDX-License-Identifier: MIT */
/* event.c: typed events rendered as key=value text or JSON lines. */
#include "event.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The line being built; once full, every later put is dropped. */
struct line {
	char *buf;
	size_t size, len;
	bool full;
};

static void
put_bytes(struct line *l, const char *s, size_t n)
{
	if (l->full || n >= l->size - l->len) {
		l->full = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
put(struct line *l, const char *s)
{
	put_bytes(l, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void
putf(struct line *l, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof tmp) {
		l->full = true;
		return;
	}
	put_bytes(l, tmp, (size_t)n);
}

static const char *const kind_word[] = {
    [EVENT_LISTEN] = "listen",
    [EVENT_ACCEPT] = "accept",
    [EVENT_START] = "start",
    [EVENT_EXIT] = "exit",
    [EVENT_END] = "end",
    [EVENT_CONNECTED] = "connected",
    [EVENT_DENY] = "deny",
    [EVENT_REJECT] = "reject",
    [EVENT_STOP] = "stop",
    [EVENT_ERROR] = "error",
    [EVENT_NOTICE] = "notice",
    [EVENT_TRACE] = "trace",
};

static const char *const end_word[] = {
    [EVENT_END_CLOSED] = "closed",
    [EVENT_END_RESET] = "reset",
    [EVENT_END_TIMEOUT] = "timeout",
    [EVENT_END_ERROR] = "error",
    [EVENT_END_STOPPED] = "stopped",
    [EVENT_END_IDLE] = "idle",
};

/* ---------------------------------------------------------------- */
/* Values                                                             */
/* ---------------------------------------------------------------- */

static bool
is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* Text: bare when unambiguous, else "..." with \" \\ \xNN. */
static void
put_text_string(struct line *l, const char *s)
{
	bool quote = s[0] == '\0' || strpbrk(s, " \"\\=") != NULL;
	for (const char *p = s; *p != '\0' && !quote; p++)
		quote = is_control((unsigned char)*p);
	if (!quote) {
		put(l, s);
		return;
	}
	put(l, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			char esc[2] = {'\\', (char)*p};
			put_bytes(l, esc, 2);
		} else if (is_control(*p)) {
			putf(l, "\\x%02x", *p);
		} else {
			put_bytes(l, (const char *)p, 1);
		}
	}
	put(l, "\"");
}

/*
 * The length of the valid UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 if there is none.
 */
static size_t
utf8_length(const unsigned char *p)
{
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0; /* overlong */
	else if (p[0] == 0xed)
		hi = 0x9f; /* surrogates */
	else if (p[0] == 0xf0)
		lo = 0x90; /* overlong */
	else if (p[0] == 0xf4)
		hi = 0x8f; /* above U+10FFFF */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* JSON (RFC 8259): a quoted string that is always valid UTF-8. */
static void
put_json_string(struct line *l, const char *s)
{
	put(l, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		if (*p == '"' || *p == '\\') {
			char esc[2] = {'\\', (char)*p};
			put_bytes(l, esc, 2);
			p++;
		} else if (is_control(*p)) {
			putf(l, "\\u%04x", *p);
			p++;
		} else if (*p < 0x80) {
			put_bytes(l, (const char *)p, 1);
			p++;
		} else {
			size_t n = utf8_length(p);
			if (n == 0) {
				put(l, "\\ufffd"); /* one per stray byte */
				n = 1;
			} else {
				put_bytes(l, (const char *)p, n);
			}
			p += n;
		}
	}
	put(l, "\"");
}

/* ---------------------------------------------------------------- */
/* Fields                                                             */
/* ---------------------------------------------------------------- */

/* Writes key=value (text) or ,"key":value (JSON), strings as such. */
struct fields {
	struct line *l;
	enum log_format f;
};

static void
put_key(struct fields *fs, const char *key)
{
	if (fs->f == LOG_FORMAT_JSON) {
		putf(fs->l, ",\"%s\":", key);
		return;
	}
	putf(fs->l, " %s=", key);
}

static void
field_str(struct fields *fs, const char *key, const char *value)
{
	put_key(fs, key);
	if (fs->f == LOG_FORMAT_JSON)
		put_json_string(fs->l, value);
	else
		put_text_string(fs->l, value);
}

static void
field_u64(struct fields *fs, const char *key, uint64_t value)
{
	put_key(fs, key);
	putf(fs->l, "%" PRIu64, value);
}

static void
field_long(struct fields *fs, const char *key, long value)
{
	put_key(fs, key);
	putf(fs->l, "%ld", value);
}

static void
field_addr(struct fields *fs, const char *key, const struct pbx_addr *a)
{
	char text[PBX_ADDR_STRLEN];

	if (pbx_addr_format(a, text, sizeof text) < 0)
		snprintf(text, sizeof text, "-");
	field_str(fs, key, text);
}

/* Every field the event has, in the one documented order. */
static void
put_fields(struct fields *fs, const struct event *ev)
{
	if (ev->remote != NULL)
		field_addr(fs, "remote", ev->remote);
	if (ev->via != NULL)
		field_addr(fs, "via", ev->via);
	if (ev->local != NULL)
		field_addr(fs, "local", ev->local);
	if (ev->pid != 0)
		field_long(fs, "pid", ev->pid);
	if (ev->program != NULL)
		field_str(fs, "program", ev->program);
	if (ev->has_bytes) {
		field_u64(fs, "in", ev->bytes_in);
		field_u64(fs, "out", ev->bytes_out);
	}
	if (ev->kind == EVENT_EXIT && ev->exited)
		field_long(fs, "status", ev->status);
	else if (ev->kind == EVENT_EXIT)
		field_long(fs, "signal", ev->signo);
	if (ev->has_ms)
		field_u64(fs, "ms", ev->ms);
	if (ev->kind == EVENT_END)
		field_str(fs, "end",
		    (unsigned)ev->end <= EVENT_END_IDLE ? end_word[ev->end]
							: "error");
	if (ev->err < 0 && ev->end != EVENT_END_STOPPED &&
	    ev->end != EVENT_END_IDLE && ev->end != EVENT_END_TIMEOUT)
		field_str(fs, "error", pbx_strerror(ev->err));
	if (ev->reason != NULL)
		field_str(fs, "reason", ev->reason);
	if (ev->rule != 0)
		field_long(fs, "rule", (long)ev->rule);
	if (ev->kind == EVENT_REJECT && ev->count != 0)
		field_u64(fs, "count", ev->count);
}

/* ---------------------------------------------------------------- */
/* Lines                                                              */
/* ---------------------------------------------------------------- */

static const char *
or_empty(const char *s)
{
	return s != NULL ? s : "";
}

/* The text shapes scripts and people already read. */
static void
put_text(struct line *l, const struct event *ev)
{
	struct fields fs = {l, LOG_FORMAT_TEXT};
	char text[PBX_ADDR_STRLEN];
	const char *cmd = or_empty(ev->cmd);

	switch (ev->kind) {
	case EVENT_LISTEN:
		if (pbx_addr_format(ev->local, text, sizeof text) < 0)
			snprintf(text, sizeof text, "-");
		put(l, "pbx: listening on ");
		put(l, text);
		return;
	case EVENT_STOP:
		putf(l, "pbx: served %" PRIu64 " connection%s", ev->count,
		    ev->count == 1 ? "" : "s");
		return;
	case EVENT_ERROR:
		put(l, "pbx: ");
		put(l, cmd);
		put(l, cmd[0] != '\0' ? ": " : "");
		put(l, or_empty(ev->message));
		return;
	case EVENT_NOTICE:
		put(l, "pbx: ");
		put(l, or_empty(ev->message));
		return;
	case EVENT_TRACE:
		put(l, "pbx: trace: ");
		if (ev->pid != 0)
			putf(l, "[%ld] ", ev->pid);
		put(l, or_empty(ev->message));
		return;
	case EVENT_ACCEPT:
	case EVENT_START:
	case EVENT_EXIT:
	case EVENT_END:
	case EVENT_CONNECTED:
	case EVENT_DENY:
	case EVENT_REJECT:
		putf(l, "pbx: %s", kind_word[ev->kind]);
		put_fields(&fs, ev);
		return;
	}
}

/* "2026-12-07T08:31:40.123456Z" */
static void
put_json_time(struct line *l, uint64_t unix_us)
{
	time_t s = (time_t)(unix_us / 1000000);
	struct tm tm;
	char date[32];

	if (gmtime_r(&s, &tm) == NULL ||
	    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		l->full = true;
		return;
	}
	putf(l, "\"%s.%06uZ\"", date, (unsigned)(unix_us % 1000000));
}

static void
put_json(struct line *l, const struct event *ev, uint64_t unix_us)
{
	struct fields fs = {l, LOG_FORMAT_JSON};

	put(l, "{\"ts\":");
	put_json_time(l, unix_us);
	putf(l, ",\"event\":\"%s\"", kind_word[ev->kind]);
	if (ev->kind == EVENT_ERROR && ev->cmd != NULL && ev->cmd[0] != '\0')
		field_str(&fs, "cmd", ev->cmd);
	put_fields(&fs, ev);
	if (ev->kind == EVENT_STOP)
		field_u64(&fs, "count", ev->count);
	if (ev->message != NULL)
		field_str(&fs, "message", ev->message);
	put(l, "}");
}

int
event_format(const struct event *ev, enum log_format f, uint64_t unix_us,
    char *buf, size_t size)
{
	struct line l = {.buf = buf, .size = size};

	if ((unsigned)ev->kind > EVENT_TRACE ||
	    (ev->kind == EVENT_LISTEN && ev->local == NULL))
		return -EINVAL;
	if (size == 0)
		return -ENOSPC;
	switch (f) {
	case LOG_FORMAT_TEXT:
		put_text(&l, ev);
		break;
	case LOG_FORMAT_JSON:
		put_json(&l, ev, unix_us);
		break;
	}
	if (l.full) {
		buf[0] = '\0';
		return -ENOSPC;
	}
	buf[l.len] = '\0';
	return (int)l.len;
}

enum event_end
event_end_of(int err)
{
	switch (err) {
	case 0:
		return EVENT_END_CLOSED;
	case EVENT_ERR_OVERDUE:
		return EVENT_END_TIMEOUT;
	case -ECONNRESET:
	case -EPIPE:
	case -ECONNABORTED:
		return EVENT_END_RESET;
	case -ECANCELED: /* the server stopped: no error of the call's */
		return EVENT_END_STOPPED;
	case EVENT_ERR_IDLE:
		return EVENT_END_IDLE;
	default:
		return EVENT_END_ERROR;
	}
}
