/* SPDX-License-Identifier: MIT */
/* log.c: the one place that writes messages to stderr. */
#include "log.h"

#include <errno.h>
#include <limits.h> /* PIPE_BUF */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_cmd = "";
static enum log_level log_lvl = LOG_NORMAL;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
static bool log_trc;
static long log_child; /* a forked child's pid, for its trace lines */

/* A message as long as today's lines; longer ones are cut. */
#define LOG_MESSAGE_MAX 1024
/* Where a program or message is cut so that the line fits PIPE_BUF. */
#define LOG_CUT 512

void
log_init(
    const char *cmd, enum log_level level, bool trace, enum log_format format)
{
	log_cmd = cmd;
	log_lvl = level;
	log_trc = trace;
	log_fmt = format;
}

void
log_tag_child(long pid)
{
	log_child = pid;
}

enum log_level
log_level(void)
{
	return log_lvl;
}

bool
log_format_parse(const char *name, enum log_format *out)
{
	if (strcmp(name, "text") == 0)
		*out = LOG_FORMAT_TEXT;
	else if (strcmp(name, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else
		return false;
	return true;
}

bool
log_tracing(void)
{
	return log_trc;
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* "s" cut to LOG_CUT bytes with "..." after them, into cut. */
static const char *
shorten(const char *s, char cut[static LOG_CUT + 4])
{
	if (s == NULL || strlen(s) <= LOG_CUT)
		return s;
	memcpy(cut, s, LOG_CUT);
	memcpy(cut + LOG_CUT, "...", 4);
	return cut;
}

/*
 * Render and write one line. PIPE_BUF is the most a pipe takes in one
 * piece, so lines from forked children cannot interleave; only a long
 * program or message can exceed it, and those are cut once.
 */
static void
write_event(const struct event *ev)
{
	char line[PIPE_BUF];
	char cut_program[LOG_CUT + 4], cut_message[LOG_CUT + 4];
	uint64_t us = log_fmt == LOG_FORMAT_JSON ? now_us() : 0;

	int n = event_format(ev, log_fmt, us, line, sizeof line - 1);
	if (n == -ENOSPC) {
		struct event cut = *ev;
		cut.program = shorten(ev->program, cut_program);
		cut.message = shorten(ev->message, cut_message);
		n = event_format(&cut, log_fmt, us, line, sizeof line - 1);
	}
	if (n < 0)
		return;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w; /* nowhere left to report a failing stderr */
}

static bool
wanted(const struct event *ev)
{
	switch (ev->kind) {
	case EVENT_LISTEN:
	case EVENT_ERROR:
		return true;
	case EVENT_STOP:
	case EVENT_NOTICE:
		return log_lvl >= LOG_NORMAL;
	case EVENT_TRACE:
		return log_trc;
	case EVENT_ACCEPT:
	case EVENT_START:
	case EVENT_EXIT:
	case EVENT_END:
	case EVENT_CONNECTED:
	case EVENT_DENY:
	case EVENT_REJECT:
		return log_lvl >= LOG_VERBOSE;
	}
	return false;
}

void
log_emit(const struct event *ev)
{
	if (wanted(ev))
		write_event(ev);
}

/* A free-form line: the message formatted, then rendered as an event. */
__attribute__((format(printf, 2, 0))) static void
write_message(struct event *ev, const char *fmt, va_list ap)
{
	char message[LOG_MESSAGE_MAX];

	if (vsnprintf(message, sizeof message, fmt, ap) < 0)
		return;
	ev->message = message;
	write_event(ev);
}

void
log_error(const char *fmt, ...)
{
	struct event ev = {.kind = EVENT_ERROR, .cmd = log_cmd};
	va_list ap;

	va_start(ap, fmt);
	write_message(&ev, fmt, ap);
	va_end(ap);
}

void
log_ready(const char *fmt, ...)
{
	struct event ev = {.kind = EVENT_NOTICE};
	va_list ap;

	va_start(ap, fmt);
	write_message(&ev, fmt, ap);
	va_end(ap);
}

void
log_notice(const char *fmt, ...)
{
	struct event ev = {.kind = EVENT_NOTICE};
	va_list ap;

	if (log_lvl < LOG_NORMAL)
		return;
	va_start(ap, fmt);
	write_message(&ev, fmt, ap);
	va_end(ap);
}

void
log_event(const char *fmt, ...)
{
	struct event ev = {.kind = EVENT_NOTICE};
	va_list ap;

	if (log_lvl < LOG_VERBOSE)
		return;
	va_start(ap, fmt);
	write_message(&ev, fmt, ap);
	va_end(ap);
}

void
log_trace(const char *fmt, ...)
{
	struct event ev = {.kind = EVENT_TRACE, .pid = log_child};
	va_list ap;

	if (!log_trc)
		return;
	va_start(ap, fmt);
	write_message(&ev, fmt, ap);
	va_end(ap);
}

void
log_trace_cb(void *arg, const char *line)
{
	(void)arg;
	log_trace("%s", line);
}
