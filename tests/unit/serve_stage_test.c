/* SPDX-License-Identifier: MIT */
/*
 * serve_stage_test.c: a real server (serve_run, in a process of its own)
 * with stages configured, under every model, over loopback. A stage that
 * waits on a loop timer and then passes lets hello greet and exec run its
 * program, with the socket and the UCSPI environment; a stage that ends
 * the connection closes it with nothing said and no program run. The -v
 * events of each connection come once each and in order, and the server
 * stops with status 0, the fds it started with and no child left.
 *
 * Each stage's cancel notes itself, so the log shows that only the stage
 * the connection ended in lets go (once), and a test handler's release
 * notes itself, so that it shows release only after the content ran. A
 * stage that holds a caller for 30 s while the server is stopped shows
 * that the stop cancels it and the server exits at once, with nothing
 * left armed or allocated (the sanitizers watch the server's exit).
 */
#include "../../src/log/log.h"
#include "../../src/serve/serve.h"
#include "check.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#define WAIT_MS 40      /* how long the waiting stage waits */
#define HOLD_MS 30000   /* how long the holding stage would wait */
#define STOP_MS 2000    /* a stop that cancels a hold takes less than this */
#define NCLIENTS 2      /* callers per server */
#define TIMEOUT_MS 5000 /* for anything the test waits for */
#define LOG_MAX 32768
#define LINES_MAX 128

/* The program reads a line, then says what it got and where it runs. */
#define PROGRAM                                                                \
	"read -r line; echo \"$line $PROTO $TCPREMOTEIP $TCPREMOTEPORT "       \
	"$TCPLOCALIP $TCPLOCALPORT $$\"; echo ran >>\"$0\""

/* ---- the stages: they run in the server (or its fork child) ---- */

/*
 * A line among the server's own, so that its place in the order shows:
 * "test: stage WHAT remote=ADDR" (or "test: handler WHAT ...").
 */
static void
test_note(const struct serve_conn *c, const char *who, const char *what)
{
	char addr[PBX_ADDR_STRLEN], line[PBX_ADDR_STRLEN + 64];

	pbx_addr_format(&c->remote, addr, sizeof addr);
	int n = snprintf(
	    line, sizeof line, "test: %s %s remote=%s\n", who, what, addr);
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

static void
stage_note(const struct serve_conn *c, const char *what)
{
	test_note(c, "stage", what);
}

/* A waiting stage's state, in the record's c->u while it waits. */
struct waiting {
	struct pbx_timer timer;
	struct serve_conn *conn;
	enum serve_verdict then; /* what the stage says once it has waited */
};

static void
on_waited(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct waiting *w = t->data;
	struct serve_conn *c = w->conn;
	enum serve_verdict then = w->then;

	(void)loop;
	/* A stage that passes lets go itself; one that ends leaves its
	 * state to its cancel, which must then run (or LSan sees it). */
	if (then == SERVE_NEXT) {
		c->u.ptr = NULL;
		free(w);
	}
	stage_note(c, then == SERVE_NEXT ? "next" : "end");
	conn_resume(c, then);
}

/* Wait ms on the loop, noting what, then say then. */
static enum serve_verdict
waiting_start(struct serve_conn *c, uint64_t ms, enum serve_verdict then,
    const char *what)
{
	struct waiting *w = malloc(sizeof *w);

	if (w == NULL)
		return SERVE_END;
	*w = (struct waiting){
	    .timer = {.cb = on_waited, .data = w}, .conn = c, .then = then};
	if (pbx_timer_start(c->srv->loop, &w->timer, ms) < 0) {
		free(w);
		return SERVE_END;
	}
	c->u.ptr = w;
	stage_note(c, what);
	return SERVE_WAIT;
}

/*
 * What every stage's cancel does: say which stage it is (a cancel run
 * for the wrong stage shows), and let go of the timer and c->u if the
 * stage still holds them. A timer left armed in freed memory would be a
 * use after free on the loop's next turn.
 */
static void
stage_let_go(struct serve_conn *c, const char *what)
{
	struct waiting *w = c->u.ptr;

	stage_note(c, what);
	if (w == NULL)
		return;
	pbx_timer_stop(c->srv->loop, &w->timer);
	free(w);
	c->u.ptr = NULL;
}

static enum serve_verdict
stage_wait_run(struct serve_conn *c)
{
	return waiting_start(c, WAIT_MS, SERVE_NEXT, "wait");
}

static void
stage_wait_cancel(struct serve_conn *c)
{
	stage_let_go(c, "cancel-wait");
}

/* Waits as stage_wait does, then ends the connection. */
static enum serve_verdict
stage_late_end_run(struct serve_conn *c)
{
	return waiting_start(c, WAIT_MS, SERVE_END, "wait");
}

static void
stage_late_end_cancel(struct serve_conn *c)
{
	stage_let_go(c, "cancel-late-end");
}

/* Holds the caller far longer than the test runs: only a stop ends it. */
static enum serve_verdict
stage_hold_run(struct serve_conn *c)
{
	return waiting_start(c, HOLD_MS, SERVE_NEXT, "hold");
}

static void
stage_hold_cancel(struct serve_conn *c)
{
	stage_let_go(c, "cancel-hold");
}

static enum serve_verdict
stage_pass_run(struct serve_conn *c)
{
	stage_note(c, "pass");
	return SERVE_NEXT;
}

static void
stage_pass_cancel(struct serve_conn *c)
{
	stage_let_go(c, "cancel-pass");
}

static enum serve_verdict
stage_end_run(struct serve_conn *c)
{
	stage_note(c, "end");
	return SERVE_END;
}

static void
stage_end_cancel(struct serve_conn *c)
{
	stage_let_go(c, "cancel-end");
}

static const struct serve_stage stage_wait = {.name = "wait",
				    .run = stage_wait_run,
				    .cancel = stage_wait_cancel},
				stage_late_end = {.name = "late-end",
				    .run = stage_late_end_run,
				    .cancel = stage_late_end_cancel},
				stage_hold = {.name = "hold",
				    .run = stage_hold_run,
				    .cancel = stage_hold_cancel},
				stage_pass = {.name = "pass",
				    .run = stage_pass_run,
				    .cancel = stage_pass_cancel},
				stage_end = {.name = "end",
				    .run = stage_end_run,
				    .cancel = stage_end_cancel};

/* ---- a handler of the test's own, whose release shows ---- */

/*
 * Greets as hello does, from state it keeps in c->u: release frees it
 * (LSan sees a release that never ran) and notes itself (the log shows
 * one that ran for a connection whose c->u was a stage's).
 */
static void
greet_start(struct serve_conn *c)
{
	char addr[PBX_ADDR_STRLEN];
	char *line = malloc(PBX_ADDR_STRLEN + 32);

	if (line == NULL) {
		conn_end(c, -ENOMEM);
		return;
	}
	c->u.ptr = line;
	pbx_addr_format(&c->remote, addr, sizeof addr);
	int len = snprintf(line, PBX_ADDR_STRLEN + 32, "Greetings, %s\n", addr);
	int r = conn_send(c, line, (size_t)len);
	if (r < 0)
		conn_end(c, r);
	else if (conn_queued(c) == 0)
		conn_finish(c);
}

static void
greet_sent(struct serve_conn *c)
{
	conn_finish(c);
}

static void
greet_release(struct serve_conn *c)
{
	test_note(c, "handler", "release");
	free(c->u.ptr);
	c->u.ptr = NULL;
}

static const struct serve_handler greet = {
    .name = "greet",
    .start = greet_start,
    .sent = greet_sent,
    .release = greet_release,
};

/* ---- the server process ---- */

enum content {
	HELLO, /* serve_hello */
	EXEC,  /* serve_exec, the program */
	GREET, /* the test's own handler */
};

/* What the stages do with each connection. */
enum flow {
	FLOW_WAIT,     /* a stage waits, then passes; the content runs */
	FLOW_END,      /* the first stage ends the connection at once */
	FLOW_LATE_END, /* the first stage waits, then ends it */
	FLOW_HOLD,     /* the first stage waits until the server stops */
};

struct scenario {
	enum serve_model model;
	enum content content;
	enum flow flow;
};

/* The flow ends the connection in a stage (its cancel runs). */
static bool
flow_ends(const struct scenario *sc)
{
	return sc->flow != FLOW_WAIT;
}

/* Each flow's stages; the second is there to be skipped, or to pass. */
static const struct serve_stage *const flow_stages[][2] = {
    [FLOW_WAIT] = {&stage_wait, &stage_pass},
    [FLOW_END] = {&stage_end, &stage_pass},
    [FLOW_LATE_END] = {&stage_late_end, &stage_pass},
    [FLOW_HOLD] = {&stage_hold, &stage_pass},
};

static const struct serve_handler *const handlers[] = {
    [HELLO] = &serve_hello, [EXEC] = &serve_exec, [GREET] = &greet};

/*
 * Serve until SIGTERM with stderr on log_fd; then say how it went: the
 * status of serve_run, the fds before and after, and whether a child is
 * left (running or unreaped). Exits 0 when all is well; exit, not _exit,
 * so that LSan looks for what the server left allocated.
 */
static void
server_main(const struct scenario *sc, int log_fd, const char *mark)
{
	const char *const argv[] = {"/bin/sh", "-c", PROGRAM, mark, NULL};
	struct serve_opts o = {
	    .address = "127.0.0.1:0",
	    .where = {.host = "127.0.0.1", .port = 0, .has_port = true},
	    .model = sc->model,
	    .max_conns = 100,
	    .backlog = 64,
	    .handler = handlers[sc->content],
	    .argv = sc->content == EXEC ? argv : NULL,
	    .stages = flow_stages[sc->flow],
	    .nstages = 2,
	};
	int null_fd = open("/dev/null", O_WRONLY);
	int status;

	setpgid(0, 0); /* the test sweeps the group at the end */
	if (null_fd < 0 || dup2(null_fd, STDOUT_FILENO) < 0 ||
	    dup2(log_fd, STDERR_FILENO) < 0)
		_exit(99);
	close(null_fd);
	close(log_fd);
	log_init("serve", LOG_VERBOSE, false, LOG_FORMAT_TEXT);
	int before = check_count_fds();
	int r = serve_run(&o);
	int after = check_count_fds();
	bool child = waitpid(-1, &status, WNOHANG) >= 0 || errno != ECHILD;
	dprintf(STDERR_FILENO, "test: server status=%d fds=%d/%d children=%s\n",
	    r, before, after, child ? "left" : "none");
	exit(r != 0 || before != after || child ? 1 : 0);
}

/* ---- the test's side ---- */

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {
	    .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The server's stderr, split into complete lines. */
struct log {
	char text[LOG_MAX];
	char *line[LINES_MAX];
	int n;
};

static void
log_load(int fd, struct log *lg)
{
	ssize_t len = pread(fd, lg->text, sizeof lg->text - 1, 0);
	char *p = lg->text;

	lg->n = 0;
	if (len < 0)
		len = 0;
	lg->text[len] = '\0';
	for (;;) {
		char *nl = strchr(p, '\n');
		if (nl == NULL || lg->n == LINES_MAX)
			break;
		*nl = '\0';
		lg->line[lg->n++] = p;
		p = nl + 1;
	}
}

/*
 * line matches pat exactly, each '#' in pat standing for a decimal number
 * (stored in nums, in order, as far as max).
 */
static bool
matches(const char *line, const char *pat, long *nums, int max)
{
	int k = 0;

	while (*pat != '\0') {
		if (*pat == '#') {
			char *end;
			if (!isdigit((unsigned char)*line))
				return false;
			long v = strtol(line, &end, 10);
			if (k < max)
				nums[k] = v;
			k++;
			line = end;
			pat++;
			continue;
		}
		if (*pat++ != *line++)
			return false;
	}
	return *line == '\0';
}

/* The caller's port a line is about, or 0. */
static unsigned
line_port(const char *line)
{
	static const char key[] = " remote=127.0.0.1:";
	const char *p = strstr(line, key);

	return p == NULL ? 0 : (unsigned)strtoul(p + sizeof key - 1, NULL, 10);
}

/* "accept", "stage:wait", "handler:release", "end", ...: what a line says. */
static void
line_word(const char *line, char *out, size_t size)
{
	const char *w = line;
	const char *prefix = "";

	if (strncmp(line, "pbx: ", 5) == 0) {
		w = line + 5;
	} else if (strncmp(line, "test: stage ", 12) == 0) {
		w = line + 12;
		prefix = "stage:";
	} else if (strncmp(line, "test: handler ", 14) == 0) {
		w = line + 14;
		prefix = "handler:";
	}
	snprintf(out, size, "%s%.*s", prefix, (int)strcspn(w, " "), w);
}

/* The words of the lines about port, in order, space-separated. */
static int
port_words(const struct log *lg, unsigned port, char *out, size_t size)
{
	int n = 0;

	out[0] = '\0';
	for (int i = 0; i < lg->n; i++) {
		char word[32];
		if (line_port(lg->line[i]) != port)
			continue;
		line_word(lg->line[i], word, sizeof word);
		size_t len = strlen(out);
		snprintf(out + len, size - len, "%s%s", n ? " " : "", word);
		n++;
	}
	return n;
}

struct client {
	int fd;
	unsigned port;
	uint64_t t0_us;    /* before connect */
	uint64_t first_us; /* since t0: the first byte, or the end */
	char reply[256];
	size_t len;
	bool eof; /* the server closed (no reset, no timeout) */
	int err;  /* errno of a failed recv */
};

/* Everything the server sends until it closes, within TIMEOUT_MS. */
static void
read_all(struct client *cl)
{
	uint64_t deadline = now_us() + TIMEOUT_MS * 1000;

	for (;;) {
		uint64_t now = now_us();
		if (now >= deadline)
			return;
		struct pollfd p = {.fd = cl->fd, .events = POLLIN};
		int r = poll(&p, 1, (int)((deadline - now) / 1000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		ssize_t n = recv(cl->fd, cl->reply + cl->len,
		    sizeof cl->reply - 1 - cl->len, 0);
		if (cl->first_us == 0)
			cl->first_us = now_us() - cl->t0_us;
		if (n <= 0) {
			cl->eof = n == 0;
			if (n < 0)
				cl->err = errno;
			cl->reply[cl->len] = '\0';
			return;
		}
		cl->len += (size_t)n;
	}
}

static int
dial(uint16_t port, struct client *cl)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	    .sin_port = htons(port),
	    .sin_addr = {htonl(INADDR_LOOPBACK)}};
	struct sockaddr_in me;
	socklen_t len = sizeof me;

	cl->t0_us = now_us();
	cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cl->fd < 0)
		return -errno;
	if (connect(cl->fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    getsockname(cl->fd, (struct sockaddr *)&me, &len) < 0)
		return -errno;
	cl->port = ntohs(me.sin_port);
	return 0;
}

/* What a run is about, and what it holds until the teardown. */
struct run {
	const struct scenario *sc;
	int log_fd;
	char mark[64]; /* exec: the file each program run appends to */
	pid_t pid;     /* the server, until reaped */
	pid_t group;   /* the server's process group */
	uint16_t port; /* where it listens */
	struct client cl[NCLIENTS];
	struct log lg;
};

/*
 * The events expected for each connection, by the words of its lines
 * (FLOW_HOLD has its own check). The stage a connection ends in lets go
 * once, after the end event; no other stage's cancel runs, and release
 * only follows content that ran. Under fork, the server's exit comes last.
 */
static const char *
expected_words(const struct scenario *sc, char *out, size_t size)
{
	static const char *const content[] = {
	    [HELLO] = " end",
	    [EXEC] = " start exit end",
	    [GREET] = " end handler:release",
	};
	const char *flow = "";

	switch (sc->flow) {
	case FLOW_WAIT:
		flow = "stage:wait stage:next stage:pass";
		break;
	case FLOW_END:
		flow = "stage:end end stage:cancel-end";
		break;
	case FLOW_LATE_END:
		flow = "stage:wait stage:end end stage:cancel-late-end";
		break;
	case FLOW_HOLD:
		flow = "stage:hold";
		break;
	}
	snprintf(out, size, "accept %s%s%s", flow,
	    sc->flow == FLOW_WAIT ? content[sc->content] : "",
	    sc->model == SERVE_FORK ? " exit" : "");
	return out;
}

static int
count_words(const char *s)
{
	int n = 1;

	for (; *s != '\0'; s++)
		n += *s == ' ';
	return n;
}

/* Wait (within TIMEOUT_MS) for the "listening on" line; the port. */
static uint16_t
wait_listening(struct run *rn)
{
	uint64_t deadline = now_us() + TIMEOUT_MS * 1000;
	long port;

	while (now_us() < deadline) {
		log_load(rn->log_fd, &rn->lg);
		if (rn->lg.n > 0 &&
		    matches(rn->lg.line[0], "pbx: listening on 127.0.0.1:#",
			&port, 1))
			return (uint16_t)port;
		sleep_ms(2);
	}
	return 0;
}

/* Wait (within TIMEOUT_MS) until every connection has all its lines. */
static bool
wait_events(struct run *rn)
{
	uint64_t deadline = now_us() + TIMEOUT_MS * 1000;
	char words[512];
	int want = count_words(expected_words(rn->sc, words, sizeof words));

	while (now_us() < deadline) {
		bool done = true;
		log_load(rn->log_fd, &rn->lg);
		for (int i = 0; i < NCLIENTS; i++)
			done &= port_words(&rn->lg, rn->cl[i].port, words,
				    sizeof words) >= want;
		if (done)
			return true;
		sleep_ms(2);
	}
	return false;
}

/* One connection's lines, field by field. */
static void
check_lines(const struct run *rn, const struct client *cl)
{
	const struct scenario *sc = rn->sc;
	bool fork_model = sc->model == SERVE_FORK;
	char remote[64], pat[256];
	long child = 0, program = 0, num[2];
	int exits = 0;

	snprintf(remote, sizeof remote, "remote=127.0.0.1:%u", cl->port);
	for (int i = 0; i < rn->lg.n; i++) {
		const char *line = rn->lg.line[i];
		char word[32];
		if (line_port(line) != cl->port)
			continue;
		num[0] = num[1] = -1; /* what a line that does not match has */
		line_word(line, word, sizeof word);
		if (strcmp(word, "accept") == 0) {
			snprintf(pat, sizeof pat,
			    "pbx: accept %s local=127.0.0.1:%u%s", remote,
			    rn->port, fork_model ? " pid=#" : "");
			CHECK(matches(line, pat, &child, 1));
			/* Under fork, the child that took the call says so. */
			if (fork_model)
				CHECK(child > 0 && child != rn->group);
		} else if (strncmp(word, "stage:", 6) == 0) {
			snprintf(pat, sizeof pat, "test: stage %s %s", word + 6,
			    remote);
			CHECK_STR(line, pat);
		} else if (strcmp(word, "start") == 0) {
			snprintf(pat, sizeof pat,
			    "pbx: start %s pid=# program=/bin/sh", remote);
			CHECK(matches(line, pat, &program, 1));
			/* The program is not the fork child: a stage ran. */
			CHECK(program > 0 && program != rn->group &&
			      program != child);
		} else if (strcmp(word, "exit") == 0) {
			snprintf(pat, sizeof pat,
			    "pbx: exit %s pid=# status=0 ms=#", remote);
			CHECK(matches(line, pat, num, 2));
			/* The program's exit first, then the fork child's. */
			long want = sc->content == EXEC &&
					    sc->flow == FLOW_WAIT && exits == 0
					? program
					: child;
			CHECK_EQ(num[0], want);
			exits++;
		} else if (strncmp(word, "handler:", 8) == 0) {
			snprintf(pat, sizeof pat, "test: handler %s %s",
			    word + 8, remote);
			CHECK_STR(line, pat);
		} else if (strcmp(word, "end") == 0) {
			/* Whether a stop says how it ended the connections
			 * it cancels is not what FLOW_HOLD is about. */
			if (sc->flow == FLOW_HOLD)
				continue;
			if (flow_ends(sc))
				snprintf(pat, sizeof pat,
				    "pbx: end %s in=0 out=0 ms=# end=closed",
				    remote);
			else if (sc->content == EXEC)
				snprintf(pat, sizeof pat,
				    "pbx: end %s ms=# end=closed", remote);
			else
				snprintf(pat, sizeof pat,
				    "pbx: end %s in=0 out=%zu ms=# end=closed",
				    remote, cl->len);
			CHECK(matches(line, pat, num, 1));
			/* The connection lasted as long as the stage waited. */
			if (sc->flow != FLOW_END)
				CHECK(num[0] >= WAIT_MS);
		} else {
			CHECK_FAILED("unexpected line: %s", line);
		}
	}
	/* What the caller got. */
	CHECK(cl->eof);
	if (!cl->eof)
		fprintf(stderr, "  caller %u: %s after %zu bytes\n", cl->port,
		    cl->err ? strerror(cl->err) : "no end", cl->len);
	/* Nothing came before the stage had waited (less the clock's
	 * millisecond granularity), not even the end. */
	if (sc->flow == FLOW_WAIT || sc->flow == FLOW_LATE_END)
		CHECK(cl->first_us >= (WAIT_MS - 5) * 1000);
	if (flow_ends(sc)) {
		CHECK_EQ(cl->len, 0);
		return;
	}
	if (sc->content == EXEC) {
		long pid = -1;
		snprintf(pat, sizeof pat,
		    "ping TCP 127.0.0.1 %u 127.0.0.1 %u #\n", cl->port,
		    rn->port);
		bool ok = matches(cl->reply, pat, &pid, 1);
		CHECK(ok);
		if (!ok)
			fprintf(stderr, "  reply: %s", cl->reply);
		CHECK_EQ(pid, program); /* the program that started, reached */
	} else {
		snprintf(pat, sizeof pat,
		    sc->content == GREET ? "Greetings, 127.0.0.1:%u\n"
					 : "Hello, person from 127.0.0.1:%u\n",
		    cl->port);
		CHECK_STR(cl->reply, pat);
	}
}

/*
 * SIGTERM, and reap the server within TIMEOUT_MS; *ms is how long that
 * took. Returns its wait status, or -1 (and leaves it to the teardown).
 */
static int
stop_server(struct run *rn, uint64_t *ms)
{
	uint64_t t0 = now_us(), deadline = t0 + TIMEOUT_MS * 1000;
	int status = -1;
	pid_t w = 0;

	kill(rn->pid, SIGTERM);
	while (w == 0 && now_us() < deadline) {
		w = waitpid(rn->pid, &status, WNOHANG);
		if (w == 0)
			sleep_ms(1);
	}
	*ms = (now_us() - t0) / 1000;
	if (w != rn->pid)
		return -1;
	rn->pid = 0;
	return status;
}

/*
 * The lines about no connection: listening first, served (count) once,
 * the server's own verdict last, and nothing else (a sanitizer's report
 * would be something else). Dumps the log when they are not so.
 */
static void
check_others(const struct run *rn, int lines, unsigned served)
{
	char listening[64], stop[64];
	int others = 0, stops = 0;

	snprintf(listening, sizeof listening, "pbx: listening on 127.0.0.1:%u",
	    rn->port);
	snprintf(stop, sizeof stop, "pbx: served %u connection%s", served,
	    served == 1 ? "" : "s");
	for (int i = 0; i < rn->lg.n; i++) {
		others += line_port(rn->lg.line[i]) == 0;
		stops += strcmp(rn->lg.line[i], stop) == 0;
	}
	if (rn->lg.n != lines + 3 || others != 3)
		for (int i = 0; i < rn->lg.n; i++)
			fprintf(stderr, "  log: %s\n", rn->lg.line[i]);
	CHECK_EQ(rn->lg.n, lines + 3);
	CHECK_EQ(others, 3);
	CHECK_EQ(stops, 1);
	REQUIRE(rn->lg.n >= 3);
	CHECK_STR(rn->lg.line[0], listening);
	long fds[2];
	bool ok = matches(rn->lg.line[rn->lg.n - 1],
	    "test: server status=0 fds=#/# children=none", fds, 2);
	CHECK(ok);
	if (ok)
		CHECK_EQ(fds[0], fds[1]);
}

/* The calls, the events, the stop; returns early when it cannot go on. */
static void
drive(struct run *rn)
{
	const struct scenario *sc = rn->sc;
	bool program = sc->content == EXEC && sc->flow == FLOW_WAIT;
	char words[512], want[512];
	uint64_t ms;

	rn->port = wait_listening(rn);
	REQUIRE(rn->port != 0);
	for (int i = 0; i < NCLIENTS; i++) {
		REQUIRE(dial(rn->port, &rn->cl[i]) == 0);
		/* The first caller speaks at once, while its stage waits. */
		if (program && i == 0)
			REQUIRE(send(rn->cl[i].fd, "ping\n", 5, 0) == 5);
	}
	/*
	 * The second speaks only once its program should be running: a
	 * socket left non-blocking would fail its read.
	 */
	if (program) {
		sleep_ms(3 * WAIT_MS);
		REQUIRE(send(rn->cl[1].fd, "ping\n", 5, 0) == 5);
	}
	for (int i = 0; i < NCLIENTS; i++)
		read_all(&rn->cl[i]);
	/* Stop only once every connection (and fork child) has ended. */
	bool all = wait_events(rn);
	CHECK(all);
	int status = stop_server(rn, &ms);
	REQUIRE(status != -1);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* The whole log: listening, each connection's lines, the count. */
	log_load(rn->log_fd, &rn->lg);
	expected_words(sc, want, sizeof want);
	for (int i = 0; i < NCLIENTS; i++) {
		port_words(&rn->lg, rn->cl[i].port, words, sizeof words);
		CHECK_STR(words, want);
		check_lines(rn, &rn->cl[i]);
	}
	check_others(rn, NCLIENTS * count_words(want), NCLIENTS);

	/* Programs ran once per connection that passed, never otherwise. */
	if (sc->content == EXEC) {
		char ran[64] = "";
		int fd = open(rn->mark, O_RDONLY | O_CLOEXEC);
		REQUIRE(fd >= 0);
		ssize_t n = read(fd, ran, sizeof ran - 1);
		close(fd);
		ran[n > 0 ? n : 0] = '\0';
		CHECK_STR(ran, program ? "ran\nran\n" : "");
	}
}

/* How many of the space-separated words are word. */
static int
word_count(const char *words, const char *word)
{
	size_t len = strlen(word);
	int n = 0;

	for (const char *p = words; *p != '\0'; p += strcspn(p, " ")) {
		p += *p == ' ';
		n += strncmp(p, word, len) == 0 && (p[len] == ' ' || !p[len]);
	}
	return n;
}

/*
 * FLOW_HOLD: callers wait in a stage that would hold them for 30 s when
 * the server is told to stop. It must stop at once, cancel each held
 * connection once (which stops the stage's timer and frees its state:
 * LSan would see what it kept, ASan a timer armed in freed memory), run
 * no content, no release and no other stage's cancel. Serial holds the
 * first caller; the second is still in the kernel's queue.
 */
static void
drive_hold(struct run *rn)
{
	int held = rn->sc->model == SERVE_SERIAL ? 1 : NCLIENTS;
	uint64_t deadline = now_us() + TIMEOUT_MS * 1000, ms;
	char words[512];
	int holding = 0, lines = 0;

	rn->port = wait_listening(rn);
	REQUIRE(rn->port != 0);
	for (int i = 0; i < NCLIENTS; i++)
		REQUIRE(dial(rn->port, &rn->cl[i]) == 0);
	/* Stop only once the stage holds every caller it will. */
	while (holding < held && now_us() < deadline) {
		sleep_ms(2);
		log_load(rn->log_fd, &rn->lg);
		holding = 0;
		for (int i = 0; i < NCLIENTS; i++) {
			port_words(
			    &rn->lg, rn->cl[i].port, words, sizeof words);
			holding += word_count(words, "stage:hold");
		}
	}
	REQUIRE(holding == held);
	int status = stop_server(rn, &ms);
	REQUIRE(status != -1);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(ms < STOP_MS);
	if (ms >= STOP_MS)
		fprintf(stderr, "  the stop took %" PRIu64 " ms\n", ms);

	log_load(rn->log_fd, &rn->lg);
	holding = 0;
	for (int i = 0; i < NCLIENTS; i++) {
		struct client *cl = &rn->cl[i];
		int n = port_words(&rn->lg, cl->port, words, sizeof words);
		read_all(cl);
		lines += n;
		if (n == 0) { /* never accepted: nothing said either */
			CHECK_EQ(cl->len, 0);
			continue;
		}
		holding++;
		int ends = word_count(words, "end");
		CHECK(strncmp(words, "accept stage:hold ", 18) == 0);
		CHECK_EQ(word_count(words, "stage:cancel-hold"), 1);
		CHECK(ends <= 1);
		CHECK_EQ(n, 3 + ends); /* and nothing else ran */
		if (n != 3 + ends)
			fprintf(stderr, "  caller %u: %s\n", cl->port, words);
		check_lines(rn, cl);
	}
	CHECK_EQ(holding, held);
	check_others(rn, lines, (unsigned)held);
}

static void
run_scenario(const struct scenario *sc)
{
	struct run *rn = calloc(1, sizeof *rn);
	char log_path[] = "/tmp/pbx-stage-log-XXXXXX";

	REQUIRE(rn != NULL);
	rn->sc = sc;
	for (int i = 0; i < NCLIENTS; i++)
		rn->cl[i].fd = -1;
	rn->log_fd = mkstemp(log_path);
	REQUIRE(rn->log_fd >= 0);
	unlink(log_path);
	fcntl(rn->log_fd, F_SETFL, O_APPEND);
	if (sc->content == EXEC) {
		snprintf(
		    rn->mark, sizeof rn->mark, "/tmp/pbx-stage-mark-XXXXXX");
		int fd = mkstemp(rn->mark);
		CHECK(fd >= 0);
		if (fd >= 0)
			close(fd);
	}
	/* Orphans of the server come back to the test, to be reaped. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	fflush(NULL);
	rn->pid = fork();
	if (rn->pid == 0)
		server_main(sc, rn->log_fd, rn->mark);
	if (rn->pid > 0) {
		setpgid(rn->pid, rn->pid);
		rn->group = rn->pid;
		if (sc->flow == FLOW_HOLD)
			drive_hold(rn);
		else
			drive(rn);
	} else {
		CHECK_FAILED("fork: %s", strerror(errno));
	}

	/* Teardown, whatever happened above. */
	for (int i = 0; i < NCLIENTS; i++)
		if (rn->cl[i].fd >= 0)
			close(rn->cl[i].fd);
	pid_t group = rn->pid > 0 ? rn->pid : rn->group;
	if (rn->pid > 0) { /* not reaped: the test gave up on it */
		kill(rn->pid, SIGKILL);
		waitpid(rn->pid, NULL, 0);
	}
	/*
	 * Nothing of the server's may outlive it (a fork child, a program,
	 * all in its process group): kill what did, and reap it here (the
	 * test is their subreaper).
	 */
	if (group > 0 && kill(-group, 0) == 0) {
		CHECK_FAILED("a process of the server outlived it");
		kill(-group, SIGKILL);
	}
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	close(rn->log_fd);
	if (sc->content == EXEC)
		unlink(rn->mark);
	free(rn);
}

#define SCENARIO(name, m, content, flow)                                       \
	static void name(void)                                                 \
	{                                                                      \
		static const struct scenario sc = {m, content, flow};          \
		run_scenario(&sc);                                             \
	}

SCENARIO(test_serial_hello_wait, SERVE_SERIAL, HELLO, FLOW_WAIT)
SCENARIO(test_serial_exec_wait, SERVE_SERIAL, EXEC, FLOW_WAIT)
SCENARIO(test_serial_greet_wait, SERVE_SERIAL, GREET, FLOW_WAIT)
SCENARIO(test_serial_hello_end, SERVE_SERIAL, HELLO, FLOW_END)
SCENARIO(test_serial_exec_end, SERVE_SERIAL, EXEC, FLOW_END)
SCENARIO(test_serial_greet_end, SERVE_SERIAL, GREET, FLOW_END)
SCENARIO(test_serial_greet_late_end, SERVE_SERIAL, GREET, FLOW_LATE_END)
SCENARIO(test_serial_greet_hold_stop, SERVE_SERIAL, GREET, FLOW_HOLD)
SCENARIO(test_fork_hello_wait, SERVE_FORK, HELLO, FLOW_WAIT)
SCENARIO(test_fork_exec_wait, SERVE_FORK, EXEC, FLOW_WAIT)
SCENARIO(test_fork_greet_wait, SERVE_FORK, GREET, FLOW_WAIT)
SCENARIO(test_fork_hello_end, SERVE_FORK, HELLO, FLOW_END)
SCENARIO(test_fork_exec_end, SERVE_FORK, EXEC, FLOW_END)
SCENARIO(test_fork_greet_end, SERVE_FORK, GREET, FLOW_END)
SCENARIO(test_fork_greet_late_end, SERVE_FORK, GREET, FLOW_LATE_END)
/*
 * No fork hold_stop: a fork child finishes the call it is on when the
 * server stops (README), so its hold would run its 30 s.
 */
SCENARIO(test_event_hello_wait, SERVE_EVENT, HELLO, FLOW_WAIT)
SCENARIO(test_event_exec_wait, SERVE_EVENT, EXEC, FLOW_WAIT)
SCENARIO(test_event_greet_wait, SERVE_EVENT, GREET, FLOW_WAIT)
SCENARIO(test_event_hello_end, SERVE_EVENT, HELLO, FLOW_END)
SCENARIO(test_event_exec_end, SERVE_EVENT, EXEC, FLOW_END)
SCENARIO(test_event_greet_end, SERVE_EVENT, GREET, FLOW_END)
SCENARIO(test_event_greet_late_end, SERVE_EVENT, GREET, FLOW_LATE_END)
SCENARIO(test_event_greet_hold_stop, SERVE_EVENT, GREET, FLOW_HOLD)

CHECK_MAIN(TEST(test_serial_hello_wait), TEST(test_serial_exec_wait),
    TEST(test_serial_greet_wait), TEST(test_serial_hello_end),
    TEST(test_serial_exec_end), TEST(test_serial_greet_end),
    TEST(test_serial_greet_late_end), TEST(test_serial_greet_hold_stop),
    TEST(test_fork_hello_wait), TEST(test_fork_exec_wait),
    TEST(test_fork_greet_wait), TEST(test_fork_hello_end),
    TEST(test_fork_exec_end), TEST(test_fork_greet_end),
    TEST(test_fork_greet_late_end), TEST(test_event_hello_wait),
    TEST(test_event_exec_wait), TEST(test_event_greet_wait),
    TEST(test_event_hello_end), TEST(test_event_exec_end),
    TEST(test_event_greet_end), TEST(test_event_greet_late_end),
    TEST(test_event_greet_hold_stop))
