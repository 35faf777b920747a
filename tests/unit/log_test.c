/* SPDX-License-Identifier: MIT */
/* Unit tests of the log module: event_format in text and JSON (every
 * kind, quoting, escaping, timestamps, a full buffer) and log_emit. */
#include "../../src/log/log.h"
#include "addr_util.h"
#include "check.h"
#include "pbx.h"

#include <limits.h>

/* 2026-12-07T08:31:40.123456Z, the time every JSON case below carries. */
#define TS 1796632300123456ULL
#define TS_TEXT "{\"ts\":\"2026-12-07T08:31:40.123456Z\""

/* Filled by setup(); the tables point at them. */
static struct pbx_addr v4_remote, v4_local, v6_remote, v6_local, v6_peer;

static void
setup(void)
{
	v4_remote = mkaddr(AF_INET, "127.0.0.1", 5555);
	v4_local = mkaddr(AF_INET, "127.0.0.1", 9234);
	v6_remote = mkaddr(AF_INET6, "2001:db8::1", 5555);
	v6_local = mkaddr(AF_INET6, "::1", 9234);
	v6_peer = mkaddr(AF_INET6, "::1", 41000);
}

struct format_case {
	const char *name;
	struct event ev;
	const char *text;
	const char *json;
};

static const struct format_case kind_cases[] = {
    {"listen v4", {.kind = EVENT_LISTEN, .local = &v4_local},
	"pbx: listening on 127.0.0.1:9234",
	TS_TEXT ",\"event\":\"listen\",\"local\":\"127.0.0.1:9234\"}"},
    {"listen v6", {.kind = EVENT_LISTEN, .local = &v6_local},
	"pbx: listening on [::1]:9234",
	TS_TEXT ",\"event\":\"listen\",\"local\":\"[::1]:9234\"}"},
    {"accept v4",
	{.kind = EVENT_ACCEPT, .remote = &v4_remote, .local = &v4_local},
	"pbx: accept remote=127.0.0.1:5555 local=127.0.0.1:9234",
	TS_TEXT ",\"event\":\"accept\",\"remote\":\"127.0.0.1:5555\","
		"\"local\":\"127.0.0.1:9234\"}"},
    {"accept v6 fork",
	{.kind = EVENT_ACCEPT,
	    .remote = &v6_remote,
	    .local = &v6_local,
	    .pid = 4242},
	"pbx: accept remote=[2001:db8::1]:5555 local=[::1]:9234 pid=4242",
	TS_TEXT ",\"event\":\"accept\",\"remote\":\"[2001:db8::1]:5555\","
		"\"local\":\"[::1]:9234\",\"pid\":4242}"},
    {"start",
	{.kind = EVENT_START,
	    .remote = &v4_remote,
	    .pid = 4242,
	    .program = "/bin/cat"},
	"pbx: start remote=127.0.0.1:5555 pid=4242 program=/bin/cat",
	TS_TEXT ",\"event\":\"start\",\"remote\":\"127.0.0.1:5555\","
		"\"pid\":4242,\"program\":\"/bin/cat\"}"},
    {"exit status",
	{.kind = EVENT_EXIT,
	    .remote = &v4_remote,
	    .pid = 4242,
	    .exited = true,
	    .status = 3,
	    .has_ms = true,
	    .ms = 12},
	"pbx: exit remote=127.0.0.1:5555 pid=4242 status=3 ms=12",
	TS_TEXT ",\"event\":\"exit\",\"remote\":\"127.0.0.1:5555\","
		"\"pid\":4242,\"status\":3,\"ms\":12}"},
    {"exit status 0",
	{.kind = EVENT_EXIT,
	    .remote = &v6_remote,
	    .pid = 1,
	    .exited = true,
	    .has_ms = true},
	"pbx: exit remote=[2001:db8::1]:5555 pid=1 status=0 ms=0",
	TS_TEXT ",\"event\":\"exit\",\"remote\":\"[2001:db8::1]:5555\","
		"\"pid\":1,\"status\":0,\"ms\":0}"},
    {"exit signal",
	{.kind = EVENT_EXIT,
	    .remote = &v4_remote,
	    .pid = 4242,
	    .signo = 9,
	    .has_ms = true,
	    .ms = 1500},
	"pbx: exit remote=127.0.0.1:5555 pid=4242 signal=9 ms=1500",
	TS_TEXT ",\"event\":\"exit\",\"remote\":\"127.0.0.1:5555\","
		"\"pid\":4242,\"signal\":9,\"ms\":1500}"},
    {"end closed",
	{.kind = EVENT_END,
	    .remote = &v4_remote,
	    .has_bytes = true,
	    .bytes_out = 30,
	    .has_ms = true},
	"pbx: end remote=127.0.0.1:5555 in=0 out=30 ms=0 end=closed",
	TS_TEXT ",\"event\":\"end\",\"remote\":\"127.0.0.1:5555\","
		"\"in\":0,\"out\":30,\"ms\":0,\"end\":\"closed\"}"},
    {"end reset",
	{.kind = EVENT_END,
	    .remote = &v6_remote,
	    .has_bytes = true,
	    .bytes_in = 18446744073709551615ULL,
	    .bytes_out = 5,
	    .has_ms = true,
	    .ms = 7,
	    .end = EVENT_END_RESET,
	    .err = -ECONNRESET},
	"pbx: end remote=[2001:db8::1]:5555 in=18446744073709551615 out=5 "
	"ms=7 end=reset error=\"Connection reset by peer\"",
	TS_TEXT ",\"event\":\"end\",\"remote\":\"[2001:db8::1]:5555\","
		"\"in\":18446744073709551615,\"out\":5,\"ms\":7,"
		"\"end\":\"reset\",\"error\":\"Connection reset by peer\"}"},
    {"end timeout, no bytes",
	{.kind = EVENT_END,
	    .remote = &v4_remote,
	    .has_ms = true,
	    .ms = 30000,
	    .end = EVENT_END_TIMEOUT,
	    .err = EVENT_ERR_OVERDUE},
	"pbx: end remote=127.0.0.1:5555 ms=30000 end=timeout",
	TS_TEXT ",\"event\":\"end\",\"remote\":\"127.0.0.1:5555\","
		"\"ms\":30000,\"end\":\"timeout\"}"},
    {"end of a peer the kernel gave up on",
	{.kind = EVENT_END,
	    .remote = &v4_remote,
	    .has_ms = true,
	    .ms = 5100,
	    .end = EVENT_END_ERROR,
	    .err = -ETIMEDOUT},
	"pbx: end remote=127.0.0.1:5555 ms=5100 end=error "
	"error=\"Connection timed out\"",
	TS_TEXT ",\"event\":\"end\",\"remote\":\"127.0.0.1:5555\","
		"\"ms\":5100,\"end\":\"error\","
		"\"error\":\"Connection timed out\"}"},
    {"end error",
	{.kind = EVENT_END,
	    .remote = &v4_remote,
	    .has_bytes = true,
	    .has_ms = true,
	    .ms = 1,
	    .end = EVENT_END_ERROR,
	    .err = -EMFILE},
	"pbx: end remote=127.0.0.1:5555 in=0 out=0 ms=1 end=error "
	"error=\"Too many open files\"",
	TS_TEXT ",\"event\":\"end\",\"remote\":\"127.0.0.1:5555\","
		"\"in\":0,\"out\":0,\"ms\":1,\"end\":\"error\","
		"\"error\":\"Too many open files\"}"},
    {"connected v6",
	{.kind = EVENT_CONNECTED, .remote = &v6_local, .local = &v6_peer},
	"pbx: connected remote=[::1]:9234 local=[::1]:41000",
	TS_TEXT ",\"event\":\"connected\",\"remote\":\"[::1]:9234\","
		"\"local\":\"[::1]:41000\"}"},
    {"connected v4",
	{.kind = EVENT_CONNECTED, .remote = &v4_local, .local = &v4_remote},
	"pbx: connected remote=127.0.0.1:9234 local=127.0.0.1:5555",
	TS_TEXT ",\"event\":\"connected\",\"remote\":\"127.0.0.1:9234\","
		"\"local\":\"127.0.0.1:5555\"}"},
    {"stop 0", {.kind = EVENT_STOP}, "pbx: served 0 connections",
	TS_TEXT ",\"event\":\"stop\",\"count\":0}"},
    {"stop 1", {.kind = EVENT_STOP, .count = 1}, "pbx: served 1 connection",
	TS_TEXT ",\"event\":\"stop\",\"count\":1}"},
    {"stop many", {.kind = EVENT_STOP, .count = 1234567},
	"pbx: served 1234567 connections",
	TS_TEXT ",\"event\":\"stop\",\"count\":1234567}"},
    {"error",
	{.kind = EVENT_ERROR,
	    .cmd = "serve",
	    .message = "bad model 'x': expected serial, fork or event"},
	"pbx: serve: bad model 'x': expected serial, fork or event",
	TS_TEXT
	",\"event\":\"error\",\"cmd\":\"serve\","
	"\"message\":\"bad model 'x': expected serial, fork or event\"}"},
    {"error, no command",
	{.kind = EVENT_ERROR,
	    .cmd = "",
	    .message = "unknown command 'frob' (see pbx --help)"},
	"pbx: unknown command 'frob' (see pbx --help)",
	TS_TEXT ",\"event\":\"error\","
		"\"message\":\"unknown command 'frob' (see pbx --help)\"}"},
    {"notice", {.kind = EVENT_NOTICE, .message = "accept queue full"},
	"pbx: accept queue full",
	TS_TEXT ",\"event\":\"notice\",\"message\":\"accept queue full\"}"},
    {"trace",
	{.kind = EVENT_TRACE, .message = "socket(AF_INET, SOCK_STREAM) = 5"},
	"pbx: trace: socket(AF_INET, SOCK_STREAM) = 5",
	TS_TEXT ",\"event\":\"trace\","
		"\"message\":\"socket(AF_INET, SOCK_STREAM) = 5\"}"},
    {"trace in a child",
	{.kind = EVENT_TRACE, .pid = 77, .message = "close(6) = 0"},
	"pbx: trace: [77] close(6) = 0",
	TS_TEXT ",\"event\":\"trace\",\"pid\":77,"
		"\"message\":\"close(6) = 0\"}"},
};

/* Strings as a START's program: quoted when ambiguous, escaped. */
static const struct format_case quote_cases[] = {
    {"plain", {.program = "/usr/bin/env"}, "program=/usr/bin/env",
	"\"program\":\"/usr/bin/env\""},
    {"space", {.program = "/opt/my prog"}, "program=\"/opt/my prog\"",
	"\"program\":\"/opt/my prog\""},
    {"empty", {.program = ""}, "program=\"\"", "\"program\":\"\""},
    {"equals", {.program = "a=b"}, "program=\"a=b\"", "\"program\":\"a=b\""},
    {"quote and backslash", {.program = "a\"b\\c"}, "program=\"a\\\"b\\\\c\"",
	"\"program\":\"a\\\"b\\\\c\""},
    {"control bytes", {.program = "x\ty\nz\x01\x1f\x7f"},
	"program=\"x\\x09y\\x0az\\x01\\x1f\\x7f\"",
	"\"program\":\"x\\u0009y\\u000az\\u0001\\u001f\\u007f\""},
    {"utf-8", {.program = "/opt/caf\xc3\xa9/\xf0\x9f\x98\x80"},
	"program=/opt/caf\xc3\xa9/\xf0\x9f\x98\x80",
	"\"program\":\"/opt/caf\xc3\xa9/\xf0\x9f\x98\x80\""},
    {"stray bytes", {.program = "a\377b\200"}, "program=a\377b\200",
	"\"program\":\"a\\ufffdb\\ufffd\""},
    {"overlong", {.program = "\xc0\xaf\xe0\x80\xaf"},
	"program=\xc0\xaf\xe0\x80\xaf",
	"\"program\":\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\""},
    {"surrogate", {.program = "\xed\xa0\x80"}, "program=\xed\xa0\x80",
	"\"program\":\"\\ufffd\\ufffd\\ufffd\""},
    {"above U+10FFFF", {.program = "\xf4\x90\x80\x80"},
	"program=\xf4\x90\x80\x80",
	"\"program\":\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
    {"cut sequence", {.program = "\xe2\x82"}, "program=\xe2\x82",
	"\"program\":\"\\ufffd\\ufffd\""},
    {"U+10FFFF", {.program = "\xf4\x8f\xbf\xbf"}, "program=\xf4\x8f\xbf\xbf",
	"\"program\":\"\xf4\x8f\xbf\xbf\""},
};

static void
check_format(const char *name, const struct event *ev, enum log_format f,
    uint64_t us, const char *want)
{
	char buf[1024];

	int n = event_format(ev, f, us, buf, sizeof buf);
	if (n < 0) {
		CHECK_FAILED("%s (%s): event_format = %d", name,
		    f == LOG_FORMAT_JSON ? "json" : "text", n);
		return;
	}
	if (strcmp(buf, want) != 0)
		CHECK_FAILED("%s (%s):\n    got  %s\n    want %s", name,
		    f == LOG_FORMAT_JSON ? "json" : "text", buf, want);
	CHECK_EQ(n, strlen(buf));
}

static void
test_log_format_kinds(void)
{
	setup();
	for (size_t i = 0; i < sizeof kind_cases / sizeof kind_cases[0]; i++) {
		const struct format_case *c = &kind_cases[i];
		check_format(c->name, &c->ev, LOG_FORMAT_TEXT, TS, c->text);
		check_format(c->name, &c->ev, LOG_FORMAT_JSON, TS, c->json);
	}
}

static void
test_log_format_quoting(void)
{
	char text[256], json[256];

	setup();
	for (size_t i = 0; i < sizeof quote_cases / sizeof quote_cases[0];
	     i++) {
		const struct format_case *c = &quote_cases[i];
		struct event ev = {.kind = EVENT_START,
		    .remote = &v4_remote,
		    .pid = 9,
		    .program = c->ev.program};
		snprintf(text, sizeof text,
		    "pbx: start remote=127.0.0.1:5555 pid=9 %s", c->text);
		snprintf(json, sizeof json,
		    TS_TEXT
		    ",\"event\":\"start\",\"remote\":\"127.0.0.1:5555\","
		    "\"pid\":9,%s}",
		    c->json);
		check_format(c->name, &ev, LOG_FORMAT_TEXT, TS, text);
		check_format(c->name, &ev, LOG_FORMAT_JSON, TS, json);
	}
}

/* Messages are not quoted in text; in JSON they are escaped as strings. */
static void
test_log_format_message_escaping(void)
{
	struct event ev = {.kind = EVENT_ERROR,
	    .cmd = "connect",
	    .message = "bad address 'a\"b\\c\n': \xff"};

	check_format("error", &ev, LOG_FORMAT_TEXT, TS,
	    "pbx: connect: bad address 'a\"b\\c\n': \xff");
	check_format("error", &ev, LOG_FORMAT_JSON, TS,
	    TS_TEXT
	    ",\"event\":\"error\",\"cmd\":\"connect\","
	    "\"message\":\"bad address 'a\\\"b\\\\c\\u000a': \\ufffd\"}");
}

struct ts_case {
	uint64_t us;
	const char *text;
};

static const struct ts_case ts_cases[] = {
    {0, "1970-01-01T00:00:00.000000Z"},
    {1, "1970-01-01T00:00:00.000001Z"},
    {946684800000001ULL, "2000-01-01T00:00:00.000001Z"},
    {1709251199999999ULL, "2024-02-29T23:59:59.999999Z"},
    {1796632300123456ULL, "2026-12-07T08:31:40.123456Z"},
};

static void
test_log_format_timestamp(void)
{
	struct event ev = {.kind = EVENT_STOP, .count = 2};
	char want[128];

	for (size_t i = 0; i < sizeof ts_cases / sizeof ts_cases[0]; i++) {
		snprintf(want, sizeof want,
		    "{\"ts\":\"%s\",\"event\":\"stop\",\"count\":2}",
		    ts_cases[i].text);
		check_format(ts_cases[i].text, &ev, LOG_FORMAT_JSON,
		    ts_cases[i].us, want);
	}
	/* Text lines carry no time. */
	check_format(
	    "text", &ev, LOG_FORMAT_TEXT, 12345, "pbx: served 2 connections");
}

/* A buffer one byte short fails whole; nothing is written past size. */
static void
test_log_format_full_buffer(void)
{
	static const char text[] =
	    "pbx: accept remote=127.0.0.1:5555 local=127.0.0.1:9234";
	static const char json[] =
	    TS_TEXT ",\"event\":\"accept\",\"remote\":\"127.0.0.1:5555\","
		    "\"local\":\"127.0.0.1:9234\"}";
	char buf[256];

	setup();
	struct event ev = {
	    .kind = EVENT_ACCEPT, .remote = &v4_remote, .local = &v4_local};
	static const struct {
		enum log_format f;
		const char *want;
		size_t len;
	} cases[] = {
	    {LOG_FORMAT_TEXT, text, sizeof text - 1},
	    {LOG_FORMAT_JSON, json, sizeof json - 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = cases[i].len;
		memset(buf, 'Z', sizeof buf);
		CHECK_EQ(event_format(&ev, cases[i].f, TS, buf, len + 1), len);
		CHECK_STR(buf, cases[i].want);
		for (size_t size = 0; size <= len; size++) {
			memset(buf, 'Z', sizeof buf);
			int r = event_format(&ev, cases[i].f, TS, buf, size);
			if (r != -ENOSPC)
				CHECK_FAILED("size %zu of %zu: %d, not -ENOSPC",
				    size, len, r);
			if (buf[size] != 'Z')
				CHECK_FAILED(
				    "size %zu: wrote past the end", size);
		}
	}
}

static void
test_log_format_invalid(void)
{
	char buf[128];
	struct event listen = {.kind = EVENT_LISTEN};
	struct event bad = {.kind = (enum event_kind)99};

	CHECK_EQ(event_format(&listen, LOG_FORMAT_TEXT, TS, buf, sizeof buf),
	    -EINVAL);
	CHECK_EQ(event_format(&listen, LOG_FORMAT_JSON, TS, buf, sizeof buf),
	    -EINVAL);
	CHECK_EQ(
	    event_format(&bad, LOG_FORMAT_JSON, TS, buf, sizeof buf), -EINVAL);
}

static void
test_log_end_of(void)
{
	static const struct {
		int err;
		enum event_end end;
	} cases[] = {
	    {0, EVENT_END_CLOSED},
	    {EVENT_ERR_OVERDUE, EVENT_END_TIMEOUT},
	    {EVENT_ERR_IDLE, EVENT_END_IDLE},
	    /* The kernel gave up on the peer: not a deadline of pbx's. */
	    {-ETIMEDOUT, EVENT_END_ERROR},
	    {-ECANCELED, EVENT_END_STOPPED},
	    {-ECONNRESET, EVENT_END_RESET},
	    {-EPIPE, EVENT_END_RESET},
	    {-ECONNABORTED, EVENT_END_RESET},
	    {-EMFILE, EVENT_END_ERROR},
	    {-EIO, EVENT_END_ERROR},
	    {PBX_EAI_NONAME, EVENT_END_ERROR},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (event_end_of(cases[i].err) != cases[i].end)
			CHECK_FAILED("event_end_of(%d) = %d, want %d",
			    cases[i].err, (int)event_end_of(cases[i].err),
			    (int)cases[i].end);
}

/* ---------------------------------------------------------------- */
/* log_emit and the free-form lines, through a pipe on stderr         */
/* ---------------------------------------------------------------- */

struct capture {
	int saved;
	int rd;
};

static bool
capture_start(struct capture *c)
{
	int p[2];

	fflush(stderr);
	if (pipe(p) < 0)
		return false;
	c->saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	c->rd = p[0];
	return c->saved >= 0;
}

/* Restore stderr and return what was written (NUL-terminated). */
static size_t
capture_end(struct capture *c, char *buf, size_t size)
{
	size_t len = 0;

	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	for (;;) {
		ssize_t n = read(c->rd, buf + len, size - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(c->rd);
	buf[len] = '\0';
	return len;
}

static void
test_log_emit_levels(void)
{
	struct capture cap;
	char out[1024];

	setup();
	struct event accept = {
	    .kind = EVENT_ACCEPT, .remote = &v4_remote, .local = &v4_local};
	struct event listen = {.kind = EVENT_LISTEN, .local = &v4_local};
	struct event stop = {.kind = EVENT_STOP, .count = 3};

	REQUIRE(capture_start(&cap));
	log_init("serve", LOG_QUIET, false, LOG_FORMAT_TEXT);
	log_emit(&accept);
	log_emit(&stop);
	log_emit(&listen);
	log_error("one %d", 1);
	log_notice("not at -q");
	log_init("serve", LOG_NORMAL, false, LOG_FORMAT_TEXT);
	log_emit(&accept);
	log_emit(&stop);
	log_trace("not without --trace");
	log_init("serve", LOG_VERBOSE, true, LOG_FORMAT_TEXT);
	log_emit(&accept);
	log_tag_child(12);
	log_trace("in the child");
	capture_end(&cap, out, sizeof out);
	CHECK_STR(out,
	    "pbx: listening on 127.0.0.1:9234\n"
	    "pbx: serve: one 1\n"
	    "pbx: served 3 connections\n"
	    "pbx: accept remote=127.0.0.1:5555 local=127.0.0.1:9234\n"
	    "pbx: trace: [12] in the child\n");
}

/* Every line is one JSON object with a time; the time itself varies. */
static void
test_log_emit_json(void)
{
	struct capture cap;
	char out[1024];
	static const char *const want[] = {
	    "\",\"event\":\"error\",\"cmd\":\"connect\","
	    "\"message\":\"dial 127.0.0.1:1: refused\"}",
	    "\",\"event\":\"notice\",\"message\":\"listening on x\"}",
	    "\",\"event\":\"trace\",\"message\":\"close(3) = 0\"}",
	    "\",\"event\":\"connected\",\"remote\":\"127.0.0.1:9234\","
	    "\"local\":\"127.0.0.1:5555\"}",
	};

	setup();
	struct event connected = {
	    .kind = EVENT_CONNECTED, .remote = &v4_local, .local = &v4_remote};
	REQUIRE(capture_start(&cap));
	log_init("connect", LOG_VERBOSE, true, LOG_FORMAT_JSON);
	log_error("dial %s: refused", "127.0.0.1:1");
	log_ready("listening on %s", "x");
	log_trace_cb(NULL, "close(3) = 0");
	log_emit(&connected);
	capture_end(&cap, out, sizeof out);

	char *line = out;
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		char *nl = strchr(line, '\n');
		REQUIRE(nl != NULL);
		*nl = '\0';
		/* {"ts":"YYYY-MM-DDTHH:MM:SS.uuuuuuZ is 34 bytes. */
		if (strncmp(line, "{\"ts\":\"", 7) != 0 || strlen(line) < 34 ||
		    line[17] != 'T' || line[26] != '.' || line[33] != 'Z' ||
		    strcmp(line + 34, want[i]) != 0)
			CHECK_FAILED("line %zu: %s\n    want {\"ts\":\"...Z%s",
			    i, line, want[i]);
		line = nl + 1;
	}
	CHECK_STR(line, "");
}

/* A program too long for one PIPE_BUF write is cut, the line kept whole. */
static void
test_log_emit_long_program(void)
{
	static char program[3 * PIPE_BUF];
	struct capture cap;
	char out[2 * PIPE_BUF];

	setup();
	memset(program, 'p', sizeof program - 1);
	struct event start = {.kind = EVENT_START,
	    .remote = &v4_remote,
	    .pid = 5,
	    .program = program};
	REQUIRE(capture_start(&cap));
	log_init("serve", LOG_VERBOSE, false, LOG_FORMAT_JSON);
	log_emit(&start);
	log_init("serve", LOG_VERBOSE, false, LOG_FORMAT_TEXT);
	log_emit(&start);
	size_t len = capture_end(&cap, out, sizeof out);

	char *nl = strchr(out, '\n');
	REQUIRE(nl != NULL);
	*nl = '\0';
	CHECK(strlen(out) < PIPE_BUF);
	CHECK(strstr(out, "\",\"event\":\"start\",") != NULL);
	CHECK(strstr(out, "ppp...\"}") != NULL);
	char *second = nl + 1;
	CHECK(
	    strncmp(second,
		"pbx: start remote=127.0.0.1:5555 pid=5 program=ppp", 50) == 0);
	CHECK(len - (size_t)(second - out) < PIPE_BUF);
	CHECK(strstr(second, "ppp...\n") != NULL);
}

CHECK_MAIN(TEST(test_log_format_kinds), TEST(test_log_format_quoting),
    TEST(test_log_format_message_escaping), TEST(test_log_format_timestamp),
    TEST(test_log_format_full_buffer), TEST(test_log_format_invalid),
    TEST(test_log_end_of), TEST(test_log_emit_levels), TEST(test_log_emit_json),
    TEST(test_log_emit_long_program))
