/* SPDX-License-Identifier: MIT */
/*
 * serve_stage_test.c: a real server (serve_run, in a process of its own)
 * with stages configured, under every model, over loopback. A stage that
 * waits on a loop timer and then passes lets hello greet and exec run its
 * program, with the socket and the UCSPI environment; a stage that ends
 * the connection closes it with nothing said and no program run. The -v
 * events of each connection come once each and in order, and the server
 * stops with status 0, the fds it started with and no child left.
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
#define NCLIENTS 2      /* callers per server */
#define TIMEOUT_MS 5000 /* for anything the test waits for */
#define LOG_MAX 32768
#define LINES_MAX 128

/* The program reads a line, then says what it got and where it runs. */
#define PROGRAM                                                                \
	"read -r line; echo \"$line $PROTO $TCPREMOTEIP $TCPREMOTEPORT "       \
	"$TCPLOCALIP $TCPLOCALPORT $$\"; echo ran >>\"$0\""

/* ---- the stages: they run in the server (or its fork child) ---- */

/* A line among the server's own, so that its place in the order shows. */
static void
stage_note(const struct serve_conn *c, const char *what)
{
	char addr[PBX_ADDR_STRLEN], line[PBX_ADDR_STRLEN + 64];

	pbx_addr_format(&c->remote, addr, sizeof addr);
	int n = snprintf(
	    line, sizeof line, "test: stage %s remote=%s\n", what, addr);
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

/* The waiting stage's state, in the record's c->u while it waits. */
struct waiting {
	struct pbx_timer timer;
	struct serve_conn *conn;
};

static void
on_waited(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct waiting *w = t->data;
	struct serve_conn *c = w->conn;

	(void)loop;
	c->u.ptr = NULL;
	free(w);
	stage_note(c, "next");
	conn_resume(c, SERVE_NEXT);
}

static enum serve_verdict
stage_wait_run(struct serve_conn *c)
{
	struct waiting *w = malloc(sizeof *w);

	if (w == NULL)
		return SERVE_END;
	*w = (struct waiting){.timer = {.cb = on_waited, .data = w}, .conn = c};
	if (pbx_timer_start(c->srv->loop, &w->timer, WAIT_MS) < 0) {
		free(w);
		return SERVE_END;
	}
	c->u.ptr = w;
	stage_note(c, "wait");
	return SERVE_WAIT;
}

static enum serve_verdict
stage_pass_run(struct serve_conn *c)
{
	stage_note(c, "pass");
	return SERVE_NEXT;
}

static enum serve_verdict
stage_end_run(struct serve_conn *c)
{
	stage_note(c, "end");
	return SERVE_END;
}

static const struct serve_stage stage_wait = {"wait", stage_wait_run},
				stage_pass = {"pass", stage_pass_run},
				stage_end = {"end", stage_end_run};
/* Waits, then passes (and the stage after it runs too). */
static const struct serve_stage *const waiting_stages[] = {
    &stage_wait, &stage_pass};
/* Ends (and the stage after it never runs). */
static const struct serve_stage *const ending_stages[] = {
    &stage_end, &stage_pass};

/* ---- the server process ---- */

struct scenario {
	enum serve_model model;
	bool exec; /* exec (the program), else hello */
	bool ends; /* the first stage ends the connection, else it waits */
};

/*
 * Serve until SIGTERM with stderr on log_fd; then say how it went: the
 * status of serve_run, the fds before and after, and whether a child is
 * left (running or unreaped). Exits 0 when all is well.
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
	    .handler = sc->exec ? &serve_exec : &serve_hello,
	    .argv = sc->exec ? argv : NULL,
	    .stages = sc->ends ? ending_stages : waiting_stages,
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

/* "accept", "stage:wait", "end", ...: what a line says. */
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

/* The events expected for each connection, by the words of its lines. */
static const char *
expected_words(const struct scenario *sc)
{
	if (sc->ends)
		return sc->model == SERVE_FORK ? "accept stage:end end exit"
					       : "accept stage:end end";
	if (sc->exec)
		return sc->model == SERVE_FORK
			   ? "accept stage:wait stage:next stage:pass start "
			     "exit end exit"
			   : "accept stage:wait stage:next stage:pass start "
			     "exit end";
	return sc->model == SERVE_FORK
		   ? "accept stage:wait stage:next stage:pass end exit"
		   : "accept stage:wait stage:next stage:pass end";
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
	int want = count_words(expected_words(rn->sc));
	char words[512];

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
			long want = sc->exec && !sc->ends && exits == 0
					? program
					: child;
			CHECK_EQ(num[0], want);
			exits++;
		} else if (strcmp(word, "end") == 0) {
			if (sc->ends)
				snprintf(pat, sizeof pat,
				    "pbx: end %s in=0 out=0 ms=# end=closed",
				    remote);
			else if (sc->exec)
				snprintf(pat, sizeof pat,
				    "pbx: end %s ms=# end=closed", remote);
			else
				snprintf(pat, sizeof pat,
				    "pbx: end %s in=0 out=%zu ms=# end=closed",
				    remote, cl->len);
			CHECK(matches(line, pat, num, 1));
			/* The connection lasted as long as the stage waited. */
			if (!sc->ends)
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
	if (sc->ends) {
		CHECK_EQ(cl->len, 0);
		return;
	}
	/* Nothing came before the stage had waited (less the clock's
	 * millisecond granularity). */
	CHECK(cl->first_us >= (WAIT_MS - 5) * 1000);
	if (sc->exec) {
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
		snprintf(pat, sizeof pat, "Hello, person from 127.0.0.1:%u\n",
		    cl->port);
		CHECK_STR(cl->reply, pat);
	}
}

/* The calls, the events, the stop; returns early when it cannot go on. */
static void
drive(struct run *rn)
{
	const struct scenario *sc = rn->sc;
	char words[512];

	rn->port = wait_listening(rn);
	REQUIRE(rn->port != 0);
	for (int i = 0; i < NCLIENTS; i++) {
		REQUIRE(dial(rn->port, &rn->cl[i]) == 0);
		/* The first caller speaks at once, while its stage waits. */
		if (sc->exec && !sc->ends && i == 0)
			REQUIRE(send(rn->cl[i].fd, "ping\n", 5, 0) == 5);
	}
	/*
	 * The second speaks only once its program should be running: a
	 * socket left non-blocking would fail its read.
	 */
	if (sc->exec && !sc->ends) {
		sleep_ms(3 * WAIT_MS);
		REQUIRE(send(rn->cl[1].fd, "ping\n", 5, 0) == 5);
	}
	for (int i = 0; i < NCLIENTS; i++)
		read_all(&rn->cl[i]);
	/* Stop only once every connection (and fork child) has ended. */
	bool all = wait_events(rn);
	CHECK(all);
	kill(rn->pid, SIGTERM);
	int status = -1;
	uint64_t deadline = now_us() + TIMEOUT_MS * 1000;
	pid_t w = 0;
	while (w == 0 && now_us() < deadline) {
		w = waitpid(rn->pid, &status, WNOHANG);
		if (w == 0)
			sleep_ms(2);
	}
	REQUIRE(w == rn->pid);
	rn->pid = 0;
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* The whole log: listening, each connection's lines, the count. */
	log_load(rn->log_fd, &rn->lg);
	const char *want = expected_words(sc);
	int per = count_words(want), others = 0;
	for (int i = 0; i < NCLIENTS; i++) {
		port_words(&rn->lg, rn->cl[i].port, words, sizeof words);
		CHECK_STR(words, want);
		check_lines(rn, &rn->cl[i]);
	}
	for (int i = 0; i < rn->lg.n; i++)
		others += line_port(rn->lg.line[i]) == 0;
	if (rn->lg.n != NCLIENTS * per + 3 || others != 3)
		for (int i = 0; i < rn->lg.n; i++)
			fprintf(stderr, "  log: %s\n", rn->lg.line[i]);
	CHECK_EQ(rn->lg.n, NCLIENTS * per + 3);
	CHECK_EQ(others, 3);
	REQUIRE(rn->lg.n >= 3);
	char listening[64];
	snprintf(listening, sizeof listening, "pbx: listening on 127.0.0.1:%u",
	    rn->port);
	CHECK_STR(rn->lg.line[0], listening);
	CHECK_STR(rn->lg.line[rn->lg.n - 2], "pbx: served 2 connections");
	long fds[2];
	bool ok = matches(rn->lg.line[rn->lg.n - 1],
	    "test: server status=0 fds=#/# children=none", fds, 2);
	CHECK(ok);
	if (ok)
		CHECK_EQ(fds[0], fds[1]);

	/* Programs ran once per connection that passed, never otherwise. */
	if (sc->exec) {
		char ran[64] = "";
		int fd = open(rn->mark, O_RDONLY | O_CLOEXEC);
		REQUIRE(fd >= 0);
		ssize_t n = read(fd, ran, sizeof ran - 1);
		close(fd);
		ran[n > 0 ? n : 0] = '\0';
		CHECK_STR(ran, sc->ends ? "" : "ran\nran\n");
	}
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
	if (sc->exec) {
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
	if (sc->exec)
		unlink(rn->mark);
	free(rn);
}

#define SCENARIO(name, m, x, e)                                                \
	static void name(void)                                                 \
	{                                                                      \
		static const struct scenario sc = {m, x, e};                   \
		run_scenario(&sc);                                             \
	}

SCENARIO(test_serial_hello_wait, SERVE_SERIAL, false, false)
SCENARIO(test_serial_exec_wait, SERVE_SERIAL, true, false)
SCENARIO(test_serial_hello_end, SERVE_SERIAL, false, true)
SCENARIO(test_serial_exec_end, SERVE_SERIAL, true, true)
SCENARIO(test_fork_hello_wait, SERVE_FORK, false, false)
SCENARIO(test_fork_exec_wait, SERVE_FORK, true, false)
SCENARIO(test_fork_hello_end, SERVE_FORK, false, true)
SCENARIO(test_fork_exec_end, SERVE_FORK, true, true)
SCENARIO(test_event_hello_wait, SERVE_EVENT, false, false)
SCENARIO(test_event_exec_wait, SERVE_EVENT, true, false)
SCENARIO(test_event_hello_end, SERVE_EVENT, false, true)
SCENARIO(test_event_exec_end, SERVE_EVENT, true, true)

CHECK_MAIN(TEST(test_serial_hello_wait), TEST(test_serial_exec_wait),
    TEST(test_serial_hello_end), TEST(test_serial_exec_end),
    TEST(test_fork_hello_wait), TEST(test_fork_exec_wait),
    TEST(test_fork_hello_end), TEST(test_fork_exec_end),
    TEST(test_event_hello_wait), TEST(test_event_exec_wait),
    TEST(test_event_hello_end), TEST(test_event_exec_end))
