/* SPDX-License-Identifier: MIT */
/* log.c: the one place that writes messages to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static const char *log_cmd = "";
static enum log_level log_lvl = LOG_NORMAL;
static bool log_trc;
static char log_tag[24]; /* "[PID] " in a forked child's trace lines */

void
log_init(const char *cmd, enum log_level level, bool trace)
{
	log_cmd = cmd;
	log_lvl = level;
	log_trc = trace;
}

void
log_tag_child(long pid)
{
	snprintf(log_tag, sizeof log_tag, "[%ld] ", pid);
}

enum log_level
log_level(void)
{
	return log_lvl;
}

bool
log_tracing(void)
{
	return log_trc;
}

/* Format "prefix + message + newline" and write it in one call. */
__attribute__((format(printf, 2, 0))) static void
emit(const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];
	int n = snprintf(line, sizeof line, "%s", prefix);
	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	if (m < 0)
		return;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof line - 2)
		len = sizeof line - 2; /* cut, but keep the newline */
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w; /* nowhere left to report a failing stderr */
}

void
log_error(const char *fmt, ...)
{
	char prefix[64];
	va_list ap;

	snprintf(prefix, sizeof prefix, "pbx: %s%s", log_cmd,
	    log_cmd[0] != '\0' ? ": " : "");
	va_start(ap, fmt);
	emit(prefix, fmt, ap);
	va_end(ap);
}

void
log_ready(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit("pbx: ", fmt, ap);
	va_end(ap);
}

void
log_notice(const char *fmt, ...)

{
	va_list ap;

	if (log_lvl < LOG_NORMAL)
		return;
	va_start(ap, fmt);
	emit("pbx: ", fmt, ap);
	va_end(ap);
}

void
log_event(const char *fmt, ...)
{
	va_list ap;

	if (log_lvl < LOG_VERBOSE)
		return;
	va_start(ap, fmt);
	emit("pbx: ", fmt, ap);
	va_end(ap);
}

void
log_trace(const char *fmt, ...)
{
	va_list ap;

	if (!log_trc)
		return;
	char prefix[48];

	snprintf(prefix, sizeof prefix, "pbx: trace: %s", log_tag);
	va_start(ap, fmt);
	emit(prefix, fmt, ap);
	va_end(ap);
}

void
log_trace_cb(void *arg, const char *line)
{
	(void)arg;
	log_trace("%s", line);
}
