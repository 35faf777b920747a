/* SPDX-License-Identifier: MIT */
/*
 * event.h: the typed events pbx reports (listen, accept, start, exit, end,
 * connected, stop), and their rendering as a key=value text line or a
 * JSON object. The core fills a struct event and calls log_emit; it never
 * formats a log line itself.
 *
 * Fields, in this one order in both formats (a field is shown only when
 * set, and each kind sets the ones listed beside it):
 *   event cmd remote via local pid program in out status|signal ms end
 *   error reason rule count message
 * Text: "pbx: WORD key=value ...". A string value that is empty or holds a
 * space, '"', '\\', '=' or a control byte is written in double quotes,
 * with '"' and '\\' escaped as \" and \\ and control bytes as \xNN.
 * JSON: {"ts":"2026-12-07T08:31:40.123456Z","event":"WORD",...}, the time
 * in RFC 3339 UTC with microseconds; numbers as JSON numbers; strings per
 * RFC 8259, control characters as \u00XX, and each byte that is not part
 * of valid UTF-8 as \ufffd, so every line is valid JSON.
 */
#ifndef EVENT_H
#define EVENT_H

#include "pbx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_format {
	LOG_FORMAT_TEXT, /* "pbx: accept remote=... local=..." */
	LOG_FORMAT_JSON, /* one JSON object per line */
};

enum event_kind {
	/* Ready: local. Text: "pbx: listening on ADDR", exactly. */
	EVENT_LISTEN,
	/* remote, local, [pid: the fork model's child] */
	EVENT_ACCEPT,
	/* A program started: remote, pid, program. */
	EVENT_START,
	/* A program or fork child ended: remote, pid, status|signal, ms. */
	EVENT_EXIT,
	/* A connection ended: remote, [in, out], ms, end, [error]. */
	EVENT_END,
	/* pbx connect reached its peer: remote, local. */
	EVENT_CONNECTED,
	/* Refused by the access rules: remote, [via], local, [rule]. */
	EVENT_DENY,
	/* Over a limit, or a bad PROXY header: remote, [via], local,
	 * reason, [count]. */
	EVENT_REJECT,
	/* The server stops: count. Text: "pbx: served N connections". */
	EVENT_STOP,
	/*
	 * The log module's free-form lines, also typed so that JSON output
	 * is all JSON. Text: "pbx: CMD: MESSAGE" (no cmd: "pbx: MESSAGE"),
	 * "pbx: MESSAGE", "pbx: trace: [PID] MESSAGE" (pid 0: no tag); the
	 * message is written as it is, not quoted.
	 */
	EVENT_ERROR,  /* cmd, message */
	EVENT_NOTICE, /* message */
	EVENT_TRACE,  /* [pid: a forked child's], message */
};

/*
 * How a connection ended (EVENT_END):
 * end=closed|reset|timeout (a deadline of pbx's own: --timeout, a
 * stage's limit)|error|stopped (the server stopped first)|idle (no byte
 * either way for the idle timeout). A peer the kernel gave up on
 * (keepalive, TCP_USER_TIMEOUT: ETIMEDOUT) is an error, so that the two
 * kinds of timeout never share a line.
 */
enum event_end {
	EVENT_END_CLOSED,
	EVENT_END_RESET,
	EVENT_END_TIMEOUT,
	EVENT_END_ERROR,
	EVENT_END_STOPPED,
	EVENT_END_IDLE,
};

/*
 * One event. Zero-initialise it (designated initialisers) and set what the
 * kind has; every pointer is borrowed for the call only.
 */
struct event {
	enum event_kind kind;
	const struct pbx_addr *remote; /* NULL: not shown */
	const struct pbx_addr *via;    /* the PROXY sender; NULL: none */
	const struct pbx_addr *local;  /* NULL: not shown */
	long pid;                      /* 0: not shown */
	bool has_bytes;                /* in= and out= shown */
	uint64_t bytes_in, bytes_out;  /* read from and written to the peer */
	bool has_ms;                   /* ms= shown */
	uint64_t ms;                   /* how long it lasted */
	bool exited;                   /* EVENT_EXIT: status= if true, */
	int status;                    /* the exit status, */
	int signo;                     /* else signal=, the killing signal */
	enum event_end end;            /* EVENT_END only */
	int err;                       /* -errno or 0: error=pbx_strerror() */
	const char *program;           /* NULL: not shown (EVENT_START) */
	const char *reason;            /* EVENT_REJECT: why */
	unsigned rule;                 /* EVENT_DENY: its line; 0: none */
	uint64_t count;                /* EVENT_STOP: connections served;
					  EVENT_REJECT: the live count */
	const char *cmd;     /* EVENT_ERROR: "serve", "connect", ... */
	const char *message; /* EVENT_ERROR, _NOTICE, _TRACE */
};

/*
 * Render one line, without the trailing newline, into buf and terminate
 * it. unix_us (microseconds since the Epoch) is the JSON "ts"; text lines
 * carry no time. Returns the length, -ENOSPC if the line and its NUL do
 * not fit in size bytes (buf then holds nothing usable), or -EINVAL for
 * an unknown kind or an EVENT_LISTEN without a local address.
 */
int event_format(const struct event *ev, enum log_format f, uint64_t unix_us,
    char *buf, size_t size);

/*
 * Emit through the log module (log.c) at the event's level: listen and
 * error always, stop and notice unless -q, trace with --trace, the rest
 * with -v. One write(2) per line, never more than PIPE_BUF bytes: a
 * program or message too long for that is cut, and "..." marks the cut.
 */
void log_emit(const struct event *ev);

/*
 * pbx's own deadlines as error codes, below every errno so that no system
 * call's error can be taken for them. The end event gives no error text
 * for them: the call did nothing wrong.
 */
enum {
	EVENT_ERR_OVERDUE = -100001, /* end=timeout */
	EVENT_ERR_IDLE = -100002,    /* end=idle */
};

/*
 * The end of a connection from its error code: 0 closed,
 * EVENT_ERR_OVERDUE timeout, EVENT_ERR_IDLE idle, -ECONNRESET, -EPIPE or
 * -ECONNABORTED reset, -ECANCELED stopped, anything else error.
 */
enum event_end event_end_of(int err);

#endif /* EVENT_H */
