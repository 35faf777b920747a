/* SPDX-License-Identifier: MIT */
/* Unit tests of the dialer on real loopback sockets, always port 0. */
#include "addr_util.h"
#include "check.h"
#include "pbx.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
is_cloexec(int fd)
{
	int f = fcntl(fd, F_GETFD);
	return f >= 0 && (f & FD_CLOEXEC) != 0;
}

static bool
is_nonblock(int fd)
{
	int f = fcntl(fd, F_GETFL);
	return f >= 0 && (f & O_NONBLOCK) != 0;
}

static uint16_t
raw_port(const struct pbx_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return ntohs(a->u.in4.sin_port);
	return ntohs(a->u.in6.sin6_port);
}

/* Listen on ip:0; returns the fd and the bound address (real port). */
static int
listen_on(int family, const char *ip, struct pbx_addr *bound)
{
	struct pbx_addr a = mkaddr(family, ip, 0);
	int fd = pbx_listen(&a, &(struct pbx_listen_opts){0});
	if (fd < 0) {
		CHECK_FAILED(
		    "pbx_listen(%s:0) = %d (%s)", ip, fd, pbx_strerror(fd));
		return fd;
	}
	if (pbx_addr_local(fd, bound) != 0) {
		CHECK_FAILED("pbx_addr_local on the listener failed");
		close(fd);
		return -1;
	}
	return fd;
}

/* A port on ip that is bound but not listening: connecting is refused and
 * nobody else can take the port while the returned fd is open. */
static int
closed_port(int family, const char *ip, struct pbx_addr *out)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct pbx_addr a = mkaddr(family, ip, 0);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (bind(fd, &a.u.sa, a.len) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		close(fd);
		return -1;
	}
	*out = a;
	if (family == AF_INET)
		out->u.in4.sin_port = ((struct sockaddr_in *)&ss)->sin_port;
	else
		out->u.in6.sin6_port = ((struct sockaddr_in6 *)&ss)->sin6_port;
	return fd;
}

/*
 * A listener with backlog 1 whose queue is full drops further SYNs, so a
 * connect to it hangs (sock_test's timeout trick). The connections that
 * filled the queue go to fds (up to 16); returns the listener.
 */
static int
hanging_listener(struct pbx_addr *bound, int *fds, int *n)
{
	struct pbx_addr a = mkaddr(AF_INET, "127.0.0.1", 0);
	int lfd = pbx_listen(&a, &(struct pbx_listen_opts){.backlog = 1});
	if (lfd < 0 || pbx_addr_local(lfd, bound) != 0) {
		CHECK_FAILED("no listener with backlog 1");
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	struct pbx_dial_opts d = {.timeout_ms = 200};
	for (*n = 0; *n < 16; (*n)++) {
		int r = pbx_dial(bound, 1, &d);
		if (r < 0)
			break;
		fds[*n] = r;
	}
	if (*n == 16)
		CHECK_FAILED("a backlog 1 listener took 16 connections");
	return lfd;
}

static void
close_all(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* ---------------------------------------------------------------- */
/* Running a dialer                                                   */
/* ---------------------------------------------------------------- */

struct outcome {
	int calls;
	int fd; /* what the last callback got */
	bool in_start;
	bool inside_start; /* a callback came from inside pbx_dialer_start */
	const struct pbx_addr *tried;
	int failed_step;
	struct pbx_timer *guard; /* stopped by the callback */
	struct pbx_loop *loop;
};

static void
record(struct pbx_dialer *d, int fd)
{
	struct outcome *out = d->data;

	out->calls++;
	out->fd = fd;
	out->inside_start |= out->in_start;
	out->tried = d->tried;
	out->failed_step = d->failed_step;
	if (out->guard != NULL)
		pbx_timer_stop(out->loop, out->guard);
}

static void
guard_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	(void)t;
	CHECK_FAILED("the dialer never called back");
	pbx_loop_stop(loop);
}

static int
start_recorded(struct pbx_loop *loop, struct pbx_dialer *d, struct outcome *out)
{
	out->loop = loop;
	d->cb = record;
	d->data = out;
	out->in_start = true;
	int r = pbx_dialer_start(loop, d);
	out->in_start = false;
	return r;
}

/*
 * Start d on a loop of its own and run until it is idle (with a 10 s
 * guard). Returns the callback's fd, or -EINTR if it never came.
 */
static int
dial_run(struct pbx_dialer *d, struct outcome *out)
{
	struct pbx_loop *loop;
	struct pbx_timer guard = {.cb = guard_cb};

	*out = (struct outcome){.fd = -EINTR, .guard = &guard};
	if (pbx_loop_new(&loop) != 0) {
		CHECK_FAILED("pbx_loop_new failed");
		return -EINTR;
	}
	pbx_timer_start(loop, &guard, 10000);
	int r = start_recorded(loop, d, out);
	CHECK_EQ(r, 0);
	if (r != 0)
		pbx_timer_stop(loop, &guard);
	CHECK_EQ(out->calls, 0); /* not inside start */
	CHECK_EQ(pbx_loop_run(loop), 0);
	pbx_dialer_cancel(d); /* after a failed run: close what it holds */
	pbx_loop_free(loop);
	CHECK_EQ(out->calls, r == 0 ? 1 : 0);
	CHECK(!out->inside_start);
	return out->fd;
}

/* Accept the dialed connection; the peer's view of the caller in *peer. */
static void
accept_one(int lfd, int cfd, struct pbx_addr *peer)
{
	struct pbx_addr local;
	int afd = pbx_accept(lfd, peer, 0);

	CHECK(afd >= 0);
	if (afd < 0)
		return;
	CHECK_EQ(pbx_addr_local(cfd, &local), 0);
	CHECK_EQ(pbx_addr_port(peer), pbx_addr_port(&local));
	CHECK_EQ(write(cfd, "ping", 4), 4);
	char buf[8] = {0};
	CHECK_EQ(read(afd, buf, sizeof buf), 4);
	CHECK(memcmp(buf, "ping", 4) == 0);
	close(afd);
}

/* ---------------------------------------------------------------- */
/* Trace                                                              */
/* ---------------------------------------------------------------- */

struct trace_log {
	char lines[16][200];
	int n;
};

static void
trace_collect(void *arg, const char *line)
{
	struct trace_log *log = arg;
	if (log->n < 16)
		snprintf(log->lines[log->n], sizeof log->lines[0], "%s", line);
	log->n++;
}

/* Whether some line is want; if none is, the trace goes to stderr. */
static bool
trace_has(const struct trace_log *log, const char *want)
{
	for (int i = 0; i < log->n && i < 16; i++)
		if (strcmp(log->lines[i], want) == 0)
			return true;
	for (int i = 0; i < log->n && i < 16; i++)
		fprintf(stderr, "    trace[%d]: %s\n", i, log->lines[i]);
	return false;
}

/* "connect(FD, 127.0.0.1:PORT)" plus rest, for the socket fd traced. */
static void
connect_line(
    char *buf, size_t size, int fd, const struct pbx_addr *a, const char *rest)
{
	snprintf(buf, size, "connect(%d, 127.0.0.1:%u)%s", fd,
	    (unsigned)raw_port(a), rest);
}

/* The fd in the n-th "socket(AF_INET, SOCK_STREAM) = FD" line, or -1. */
static int
traced_socket(const struct trace_log *log, int nth)
{
	for (int i = 0; i < log->n && i < 16; i++) {
		int fd;
		if (sscanf(log->lines[i], "socket(AF_INET, SOCK_STREAM) = %d",
			&fd) == 1 &&
		    nth-- == 0)
			return fd;
	}
	return -1;
}

/* ---------------------------------------------------------------- */

static void
test_dial_connects(void)
{
	struct pbx_addr bound, peer;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	struct trace_log log = {0};
	struct pbx_dialer d = {.addrs = &bound,
	    .naddrs = 1,
	    .trace = trace_collect,
	    .trace_arg = &log};
	struct outcome out;

	int fd = dial_run(&d, &out);
	REQUIRE(fd >= 0);
	CHECK(is_cloexec(fd));
	CHECK(is_nonblock(fd));
	CHECK(out.tried == &bound);
	CHECK_EQ(out.failed_step, 0);
	char want[64];
	connect_line(want, sizeof want, fd, &bound, "");
	CHECK(trace_has(&log, want));
	CHECK_EQ(traced_socket(&log, 0), fd);
	accept_one(lfd, fd, &peer);
	close(fd);
	close(lfd);
}

static void
test_dial_refused(void)
{
	struct pbx_addr dead;
	int hold = closed_port(AF_INET, "127.0.0.1", &dead);
	REQUIRE(hold >= 0);
	struct trace_log log = {0};
	struct pbx_dialer d = {.addrs = &dead,
	    .naddrs = 1,
	    .trace = trace_collect,
	    .trace_arg = &log};
	struct outcome out;

	CHECK_EQ(dial_run(&d, &out), -ECONNREFUSED);
	CHECK(out.tried == &dead);
	CHECK_EQ(out.failed_step, PBX_DIAL_CONNECT);
	char want[80];
	connect_line(want, sizeof want, traced_socket(&log, 0), &dead,
	    " failed: Connection refused");
	CHECK(trace_has(&log, want));
	close(hold);
}

static void
test_dial_tries_in_turn(void)
{
	struct pbx_addr addrs[2], peer;
	int lfd = listen_on(AF_INET, "127.0.0.1", &addrs[1]);
	REQUIRE(lfd >= 0);
	int hold = closed_port(AF_INET, "127.0.0.1", &addrs[0]);
	REQUIRE(hold >= 0);
	struct trace_log log = {0};
	struct pbx_dialer d = {.addrs = addrs,
	    .naddrs = 2,
	    .trace = trace_collect,
	    .trace_arg = &log};
	struct outcome out;

	int fd = dial_run(&d, &out);
	CHECK(fd >= 0);
	CHECK(out.tried == &addrs[1]);
	CHECK_EQ(out.failed_step, 0);
	char want[80];
	connect_line(want, sizeof want, traced_socket(&log, 0), &addrs[0],
	    " failed: Connection refused");
	CHECK(trace_has(&log, want));
	if (fd >= 0) {
		CHECK_EQ(traced_socket(&log, 1), fd);
		struct pbx_addr remote;
		CHECK_EQ(pbx_addr_remote(fd, &remote), 0);
		CHECK_EQ(pbx_addr_port(&remote), raw_port(&addrs[1]));
		accept_one(lfd, fd, &peer);
		close(fd);
	}

	/* Two dead ends: the error of the last, and tried says which. */
	struct pbx_addr dead[2] = {addrs[0]};
	int hold2 = closed_port(AF_INET, "127.0.0.1", &dead[1]);
	REQUIRE(hold2 >= 0);
	d = (struct pbx_dialer){.addrs = dead, .naddrs = 2};
	CHECK_EQ(dial_run(&d, &out), -ECONNREFUSED);
	CHECK(out.tried == &dead[1]);
	CHECK_EQ(out.failed_step, PBX_DIAL_CONNECT);
	close(hold2);
	close(hold);
	close(lfd);
}

/* The per-address timeout ends a connect that hangs, on time. */
static void
test_dial_timeout(void)
{
	struct pbx_addr bound;
	int fds[16], n = 0;
	int lfd = hanging_listener(&bound, fds, &n);
	REQUIRE(lfd >= 0);
	struct trace_log log = {0};
	struct pbx_dialer d = {.addrs = &bound,
	    .naddrs = 1,
	    .timeout_ms = 300,
	    .trace = trace_collect,
	    .trace_arg = &log};
	struct outcome out;

	int64_t t0 = now_ms();
	CHECK_EQ(dial_run(&d, &out), -ETIMEDOUT);
	int64_t elapsed = now_ms() - t0;
	CHECK(elapsed >= 250);
	CHECK(elapsed < 2000);
	CHECK(out.tried == &bound);
	CHECK_EQ(out.failed_step, PBX_DIAL_CONNECT);
	char want[80];
	connect_line(want, sizeof want, traced_socket(&log, 0), &bound,
	    " failed: Connection timed out");
	CHECK(trace_has(&log, want));

	/* The timeout is per address: the next one still gets its turn. */
	struct pbx_addr addrs[2] = {bound}, peer;
	int lfd2 = listen_on(AF_INET, "127.0.0.1", &addrs[1]);
	REQUIRE(lfd2 >= 0);
	d = (struct pbx_dialer){.addrs = addrs, .naddrs = 2, .timeout_ms = 300};
	t0 = now_ms();
	int fd = dial_run(&d, &out);
	elapsed = now_ms() - t0;
	CHECK(fd >= 0);
	CHECK(out.tried == &addrs[1]);
	CHECK(elapsed >= 250);
	CHECK(elapsed < 2000);
	if (fd >= 0) {
		accept_one(lfd2, fd, &peer);
		close(fd);
	}
	close(lfd2);
	close_all(fds, n);
	close(lfd);
}

/* The source is bound first: the peer sees its address and port. */
static void
test_dial_source_bound(void)
{
	struct pbx_addr bound, src, peer;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	/* Find a free port on 127.0.0.2, then release it for the dial. */
	int hold = closed_port(AF_INET, "127.0.0.2", &src);
	REQUIRE(hold >= 0);
	close(hold);
	REQUIRE(raw_port(&src) != 0);
	struct pbx_dialer d = {.addrs = &bound, .naddrs = 1, .source = &src};
	struct outcome out;

	int fd = dial_run(&d, &out);
	REQUIRE(fd >= 0);
	accept_one(lfd, fd, &peer);
	CHECK_EQ(peer.u.sa.sa_family, AF_INET);
	CHECK_EQ(ntohl(peer.u.in4.sin_addr.s_addr), 0x7f000002);
	CHECK_EQ(raw_port(&peer), raw_port(&src));
	close(fd);
	close(lfd);
}

/* A source that cannot be bound fails once for every address. */
static void
test_dial_bind_fails(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	struct pbx_addr addrs[2] = {bound, bound};
	struct pbx_addr src = mkaddr(AF_INET, "192.0.2.1", 0); /* TEST-NET-1 */
	struct trace_log log = {0};
	struct pbx_dialer d = {.addrs = addrs,
	    .naddrs = 2,
	    .source = &src,
	    .trace = trace_collect,
	    .trace_arg = &log};
	struct outcome out;

	CHECK_EQ(dial_run(&d, &out), -EADDRNOTAVAIL);
	CHECK_EQ(out.failed_step, PBX_DIAL_BIND);
	CHECK(out.tried == &addrs[0]);
	CHECK_EQ(traced_socket(&log, 1), -1); /* one socket, not two */
	char want[80];
	snprintf(want, sizeof want,
	    "bind(%d, 192.0.2.1:0) failed: Cannot assign requested address",
	    traced_socket(&log, 0));
	CHECK(trace_has(&log, want));
	close(lfd);
}

static void
test_dial_source_family_mismatch(void)
{
	struct pbx_addr bound6, bound4;
	int lfd6 = listen_on(AF_INET6, "::1", &bound6);
	REQUIRE(lfd6 >= 0);
	struct pbx_addr src = mkaddr(AF_INET, "127.0.0.1", 0);
	struct trace_log log = {0};
	struct pbx_dialer d = {.addrs = &bound6,
	    .naddrs = 1,
	    .source = &src,
	    .trace = trace_collect,
	    .trace_arg = &log};
	struct outcome out;

	CHECK_EQ(dial_run(&d, &out), -EAFNOSUPPORT);
	CHECK(out.tried == NULL);
	CHECK_EQ(out.failed_step, 0);
	CHECK_EQ(log.n, 0); /* not even a socket */

	/* Nothing to try at all: the same answer. */
	d = (struct pbx_dialer){.addrs = NULL, .naddrs = 0};
	CHECK_EQ(dial_run(&d, &out), -EAFNOSUPPORT);

	/* A mixed list: only the address of the source's family is tried. */
	int lfd4 = listen_on(AF_INET, "127.0.0.1", &bound4);
	REQUIRE(lfd4 >= 0);
	struct pbx_addr addrs[2] = {bound6, bound4}, peer;
	d = (struct pbx_dialer){.addrs = addrs, .naddrs = 2, .source = &src};
	int fd = dial_run(&d, &out);
	CHECK(fd >= 0);
	CHECK(out.tried == &addrs[1]);
	if (fd >= 0) {
		accept_one(lfd4, fd, &peer);
		close(fd);
	}
	CHECK(pbx_set_nonblock(lfd6, true) == 0);
	CHECK_EQ(pbx_accept(lfd6, NULL, 0), -EAGAIN);
	close(lfd4);
	close(lfd6);
}

/* ---------------------------------------------------------------- */
/* Cancel                                                             */
/* ---------------------------------------------------------------- */

struct canceller {
	struct pbx_timer t;
	struct pbx_dialer *d;
};

static void
cancel_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct canceller *c = (struct canceller *)t;
	(void)loop;
	pbx_dialer_cancel(c->d);
}

/* Cancelled while its connect hangs: no callback, no fd left behind. */
static void
test_dial_cancel_connecting(void)
{
	struct pbx_addr bound;
	int fds[16], n = 0;
	int lfd = hanging_listener(&bound, fds, &n);
	REQUIRE(lfd >= 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct pbx_dialer d = {.addrs = &bound, .naddrs = 1};
	struct outcome out = {.fd = -EINTR};
	struct canceller c = {.t = {.cb = cancel_cb}, .d = &d};

	CHECK_EQ(start_recorded(loop, &d, &out), 0);
	CHECK_EQ(pbx_timer_start(loop, &c.t, 100), 0);
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0); /* ends: nothing is watched */
	CHECK(now_ms() - t0 < 2000);
	CHECK_EQ(out.calls, 0);
	pbx_dialer_cancel(&d); /* idle: nothing happens */
	pbx_loop_free(loop);
	close_all(fds, n);
	close(lfd);
}

/* Cancelled with its outcome known but not yet delivered. */
static void
test_dial_cancel_before_completion(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct pbx_addr src = mkaddr(AF_INET6, "::1", 0);
	struct pbx_dialer early = {
	    .addrs = &bound, .naddrs = 1, .flags = PBX_DIALER_EARLY};
	struct pbx_dialer mismatch = {
	    .addrs = &bound, .naddrs = 1, .source = &src};
	struct pbx_dialer connecting = {.addrs = &bound, .naddrs = 1};
	struct outcome out1 = {0}, out2 = {0}, out3 = {0};

	CHECK_EQ(start_recorded(loop, &early, &out1), 0);
	CHECK_EQ(start_recorded(loop, &mismatch, &out2), 0);
	CHECK_EQ(start_recorded(loop, &connecting, &out3), 0);
	pbx_dialer_cancel(&early); /* holds a socket under way */
	pbx_dialer_cancel(&mismatch);
	pbx_dialer_cancel(&connecting);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(out1.calls + out2.calls + out3.calls, 0);
	pbx_loop_free(loop);
	close(lfd);
}

/* ---------------------------------------------------------------- */
/* Callbacks                                                          */
/* ---------------------------------------------------------------- */

/* Whatever the outcome, even known at once, it comes from the loop. */
static void
test_dial_callback_never_inside_start(void)
{
	struct pbx_addr bound, dead;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	int hold = closed_port(AF_INET, "127.0.0.1", &dead);
	REQUIRE(hold >= 0);
	struct pbx_addr src6 = mkaddr(AF_INET6, "::1", 0);
	struct pbx_addr bad = mkaddr(AF_INET, "192.0.2.1", 0);
	struct pbx_dialer cases[] = {
	    {.addrs = &bound, .naddrs = 1},
	    {.addrs = &bound, .naddrs = 1, .flags = PBX_DIALER_EARLY},
	    {.addrs = &dead, .naddrs = 1},
	    {.addrs = &dead, .naddrs = 1, .flags = PBX_DIALER_EARLY},
	    {.addrs = &bound, .naddrs = 1, .source = &src6},
	    {.addrs = &bound, .naddrs = 1, .source = &bad},
	    {.addrs = NULL, .naddrs = 0},
	};
	struct outcome out;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int fd = dial_run(&cases[i], &out); /* checks it all */
		if (fd >= 0) {
			struct pbx_addr peer;
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			CHECK_EQ(poll(&p, 1, 5000), 1);
			if (pbx_dial_finish(fd) == 0)
				accept_one(lfd, fd, &peer);
			close(fd);
		}
	}
	close(hold);
	close(lfd);
}

struct chain {
	struct pbx_loop *loop;
	struct pbx_dialer first, second;
	const struct pbx_addr *good;
	int first_calls, second_calls;
	int fds[2]; /* what the retried first and the second got */
	bool starting;
};

static void chain_first(struct pbx_dialer *d, int fd);

static void
chain_second(struct pbx_dialer *d, int fd)
{
	struct chain *c = d->data;

	CHECK(!c->starting);
	c->second_calls++;
	c->fds[1] = fd;
}

/* Refused: retry with the same dialer, and start another beside it. */
static void
chain_first(struct pbx_dialer *d, int fd)
{
	struct chain *c = d->data;

	CHECK(!c->starting);
	if (c->first_calls++ > 0) {
		c->fds[0] = fd;
		return;
	}
	CHECK_EQ(fd, -ECONNREFUSED);
	d->addrs = c->good;
	c->starting = true;
	CHECK_EQ(pbx_dialer_start(c->loop, d), 0);
	CHECK_EQ(pbx_dialer_start(c->loop, &c->second), 0);
	c->starting = false;
}

static void
test_dial_callback_starts_another(void)
{
	struct pbx_addr bound, dead, peer;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	int hold = closed_port(AF_INET, "127.0.0.1", &dead);
	REQUIRE(hold >= 0);
	struct chain c = {.good = &bound, .fds = {-1, -1}};
	c.first = (struct pbx_dialer){
	    .addrs = &dead, .naddrs = 1, .cb = chain_first, .data = &c};
	c.second = (struct pbx_dialer){
	    .addrs = &bound, .naddrs = 1, .cb = chain_second, .data = &c};
	REQUIRE(pbx_loop_new(&c.loop) == 0);

	c.starting = true;
	CHECK_EQ(pbx_dialer_start(c.loop, &c.first), 0);
	c.starting = false;
	CHECK_EQ(pbx_loop_run(c.loop), 0);
	pbx_loop_free(c.loop);
	CHECK_EQ(c.first_calls, 2);
	CHECK_EQ(c.second_calls, 1);
	for (int i = 0; i < 2; i++) {
		CHECK(c.fds[i] >= 0);
		if (c.fds[i] >= 0) {
			accept_one(lfd, c.fds[i], &peer);
			close(c.fds[i]);
		}
	}
	close(hold);
	close(lfd);
}

/* ---------------------------------------------------------------- */
/* Early hand-over                                                    */
/* ---------------------------------------------------------------- */

/* The socket comes with its connect under way; writability tells. */
static void
test_dial_early_connects(void)
{
	struct pbx_addr bound, peer;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	struct pbx_addr src = mkaddr(AF_INET, "127.0.0.2", 0);
	struct trace_log log = {0};
	struct pbx_dialer d = {.addrs = &bound,
	    .naddrs = 1,
	    .source = &src,
	    .flags = PBX_DIALER_EARLY,
	    .trace = trace_collect,
	    .trace_arg = &log};
	struct outcome out;

	int fd = dial_run(&d, &out);
	REQUIRE(fd >= 0);
	CHECK(is_cloexec(fd));
	CHECK(is_nonblock(fd));
	CHECK(out.tried == &bound);
	char want[80];
	connect_line(want, sizeof want, fd, &bound, " in progress");
	CHECK(trace_has(&log, want));
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	CHECK_EQ(poll(&p, 1, 5000), 1);
	CHECK_EQ(pbx_dial_finish(fd), 0);
	accept_one(lfd, fd, &peer);
	CHECK_EQ(ntohl(peer.u.in4.sin_addr.s_addr), 0x7f000002);
	close(fd);
	close(lfd);
}

/* A refusal is the caller's to see: at once, or on the socket. */
static void
test_dial_early_refused(void)
{
	struct pbx_addr dead;
	int hold = closed_port(AF_INET, "127.0.0.1", &dead);
	REQUIRE(hold >= 0);
	struct pbx_dialer d = {
	    .addrs = &dead, .naddrs = 1, .flags = PBX_DIALER_EARLY};
	struct outcome out;

	int fd = dial_run(&d, &out);
	if (fd < 0) {
		CHECK_EQ(fd, -ECONNREFUSED);
		CHECK_EQ(out.failed_step, PBX_DIAL_CONNECT);
	} else {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		CHECK_EQ(poll(&p, 1, 5000), 1);
		char c;
		errno = 0;
		CHECK_EQ(read(fd, &c, 1), -1);
		CHECK_EQ(errno, ECONNREFUSED);
		close(fd);
	}
	close(hold);
}

CHECK_MAIN(TEST(test_dial_connects), TEST(test_dial_refused),
    TEST(test_dial_tries_in_turn), TEST(test_dial_timeout),
    TEST(test_dial_source_bound), TEST(test_dial_bind_fails),
    TEST(test_dial_source_family_mismatch), TEST(test_dial_cancel_connecting),
    TEST(test_dial_cancel_before_completion),
    TEST(test_dial_callback_never_inside_start),
    TEST(test_dial_callback_starts_another), TEST(test_dial_early_connects),
    TEST(test_dial_early_refused))
