/* SPDX-License-Identifier: MIT */
/*
 * log.h: every line pbx writes to stderr. One write(2) per line, so lines
 * from a server and its forked children never interleave mid-line. In the
 * JSON format every line is a JSON object (event.h): the free-form lines
 * below are {"event":"error","cmd":..,"message":..}, {"event":"notice",..}
 * and {"event":"trace",..}; typed events go through log_emit (event.h).
 */
#ifndef LOG_H
#define LOG_H

#include "event.h"

#include <stdbool.h>

enum log_level {
	LOG_QUIET = 0,   /* -q: errors only */
	LOG_NORMAL = 1,  /* default: errors, warnings, the listening line */
	LOG_VERBOSE = 2, /* -v: a line per connection event */
};

/*
 * cmd is the subcommand named in error lines ("serve", "connect"); it is
 * borrowed until the next log_init. The format applies to every line.
 */
void log_init(
    const char *cmd, enum log_level level, bool trace, enum log_format format);
enum log_level log_level(void);
/* "text" or "json" (the --log-format values); false for anything else. */
bool log_format_parse(const char *name, enum log_format *out);
/* In a forked child: trace lines say "[PID] " so both sides can be told. */
void log_tag_child(long pid);
bool log_tracing(void);

/* "pbx: CMD: ..." whatever the level. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "pbx: ..." at every level: readiness (in JSON a notice; EVENT_LISTEN). */
void log_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "pbx: ..." at LOG_NORMAL and above. */
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "pbx: ..." at LOG_VERBOSE, a notice (typed events: log_emit). */
void log_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "pbx: trace: ..." with --trace. */
void log_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, as a pbx_trace_cb for libpbx (arg unused). */
void log_trace_cb(void *arg, const char *line);

#endif /* LOG_H */
