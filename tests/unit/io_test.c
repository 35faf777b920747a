/* SPDX-License-Identifier: MIT */
/* Unit tests of the io module: read/write helpers over socketpairs and
 * loopback TCP, and the relay between pipes and a TCP connection. */
#include "check.h"
#include "pbx.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#define BIG (4u << 20) /* 4 MiB */

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A pattern that does not repeat at any power-of-two period we use. */
static uint8_t
pat(size_t i, unsigned seed)
{
	uint32_t x = (uint32_t)i * 2654435761u + seed * 40503u;
	return (uint8_t)((x >> 24) ^ (x >> 11));
}

static uint8_t *
make_pattern(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len ? len : 1);
	if (p != NULL)
		for (size_t i = 0; i < len; i++)
			p[i] = pat(i, seed);
	return p;
}

/* Index of the first byte that is not pattern seed, or len. */
static size_t
pattern_mismatch(const uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pat(i, seed))
			return i;
	return len;
}

static void
set_nonblock_raw(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* A connected loopback TCP pair made with plain libc (close-on-exec). */
static int
tcp_pair(int fds[2])
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -1;
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 ||
	    listen(l, 4) != 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) != 0)
		goto fail;
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0)
		goto fail;
	if (connect(fds[0], (struct sockaddr *)&a, sizeof a) != 0) {
		close(fds[0]);
		goto fail;
	}
	fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fds[1] < 0) {
		close(fds[0]);
		goto fail;
	}
	close(l);
	return 0;
fail:
	close(l);
	return -1;
}

static int
unix_pair(int fds[2])
{
	return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
}

/* Read exactly n bytes with plain poll/read, within timeout_ms. */
static ssize_t
recv_exact(int fd, void *buf, size_t n, int timeout_ms)
{
	size_t got = 0;
	int64_t end = now_ms() + timeout_ms;
	while (got < n) {
		int left = (int)(end - now_ms());
		if (left <= 0)
			return (ssize_t)got;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			return (ssize_t)got;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* True when fd reads end of stream within timeout_ms. */
static bool
sees_eof(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) != 1)
		return false;
	char c;
	return read(fd, &c, 1) == 0;
}

/* Reap pid; returns its exit status, or -1 if it did not exit normally. */
static int
reap(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---------------------------------------------------------------- */
/* write_all / read_all, 4 MiB                                        */
/* ---------------------------------------------------------------- */

/* The child reads BIG bytes with pbx_read_all and checks them. */
static void
check_write_all_to_reader(int fds[2])
{
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		alarm(15);
		close(fds[0]);
		uint8_t *buf = malloc(BIG);
		if (buf == NULL)
			_exit(10);
		ssize_t n = pbx_read_all(fds[1], buf, BIG, 10000);
		if (n != (ssize_t)BIG)
			_exit(11);
		if (pattern_mismatch(buf, BIG, 1) != BIG)
			_exit(12);
		uint8_t extra[16];
		if (pbx_read_all(fds[1], extra, sizeof extra, 10000) != 0)
			_exit(13);
		free(buf);
		_exit(0);
	}
	close(fds[1]);
	uint8_t *data = make_pattern(BIG, 1);
	REQUIRE(data != NULL);
	set_nonblock_raw(fds[0]);
	CHECK_EQ(pbx_write_all(fds[0], data, BIG), BIG);
	close(fds[0]);
	free(data);
	CHECK_EQ(reap(pid), 0);
}

/* The child writes BIG bytes (blocking) and exits; we read them all with
 * a non-blocking fd and ask for more than will come. */
static void
check_read_all_from_writer(int fds[2])
{
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		alarm(15);
		close(fds[0]);
		uint8_t *data = make_pattern(BIG, 2);
		if (data == NULL)
			_exit(10);
		if (pbx_write_all(fds[1], data, BIG) != (ssize_t)BIG)
			_exit(11);
		free(data);
		_exit(0);
	}
	close(fds[1]);
	set_nonblock_raw(fds[0]);
	uint8_t *buf = malloc(BIG + 100);
	REQUIRE(buf != NULL);
	CHECK_EQ(pbx_read_all(fds[0], buf, BIG + 100, 10000), BIG);
	CHECK_EQ(pattern_mismatch(buf, BIG, 2), BIG);
	free(buf);
	close(fds[0]);
	CHECK_EQ(reap(pid), 0);
}

static void
test_io_write_all_socketpair(void)
{
	int fds[2];
	REQUIRE(unix_pair(fds) == 0);
	check_write_all_to_reader(fds);
}

static void
test_io_write_all_tcp(void)
{
	int fds[2];
	REQUIRE(tcp_pair(fds) == 0);
	check_write_all_to_reader(fds);
}

static void
test_io_read_all_socketpair(void)
{
	int fds[2];
	REQUIRE(unix_pair(fds) == 0);
	check_read_all_from_writer(fds);
}

static void
test_io_read_all_tcp(void)
{
	int fds[2];
	REQUIRE(tcp_pair(fds) == 0);
	check_read_all_from_writer(fds);
}

/* ---------------------------------------------------------------- */

static void
test_io_read_all_timeout(void)
{
	int fds[2];
	REQUIRE(unix_pair(fds) == 0);
	char buf[16];
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_read_all(fds[0], buf, 1, 200), -ETIMEDOUT);
	int64_t el = now_ms() - t0;
	CHECK(el >= 190);
	CHECK(el < 1500);

	/* Some bytes, but not len of them and no end of stream. */
	CHECK_EQ(write(fds[1], "abc", 3), 3);
	t0 = now_ms();
	CHECK_EQ(pbx_read_all(fds[0], buf, 10, 200), -ETIMEDOUT);
	el = now_ms() - t0;
	CHECK(el >= 190);
	CHECK(el < 1500);
	close(fds[0]);
	close(fds[1]);
}

/* The timeout bounds the whole call, not each wait: a peer that drips a
 * byte every 40 ms must not keep read_all going past its timeout. */
static void
test_io_read_all_timeout_is_total(void)
{
	int fds[2];
	REQUIRE(unix_pair(fds) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		alarm(10);
		close(fds[0]);
		for (int i = 0; i < 40; i++) {
			if (write(fds[1], "x", 1) != 1)
				break;
			sleep_ms(40);
		}
		_exit(0);
	}
	close(fds[1]);
	char buf[64];
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_read_all(fds[0], buf, 40, 300), -ETIMEDOUT);
	int64_t el = now_ms() - t0;
	CHECK(el >= 290);
	CHECK(el < 1000);
	close(fds[0]);
	CHECK_EQ(reap(pid), 0);
}

static void
test_io_read_all_short_at_eof(void)
{
	int fds[2];
	REQUIRE(unix_pair(fds) == 0);
	CHECK_EQ(write(fds[1], "hello", 5), 5);
	CHECK_EQ(shutdown(fds[1], SHUT_WR), 0);
	char buf[100];
	memset(buf, 0, sizeof buf);
	CHECK_EQ(pbx_read_all(fds[0], buf, sizeof buf, -1), 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	CHECK_EQ(pbx_read_all(fds[0], buf, sizeof buf, -1), 0);
	close(fds[0]);
	close(fds[1]);

	/* Over TCP, with the peer closing outright. */
	REQUIRE(tcp_pair(fds) == 0);
	CHECK_EQ(write(fds[1], "0123456789", 10), 10);
	close(fds[1]);
	CHECK_EQ(pbx_read_all(fds[0], buf, sizeof buf, 5000), 10);
	CHECK(memcmp(buf, "0123456789", 10) == 0);
	close(fds[0]);
}

/* A non-blocking fd with nothing yet: read_all waits instead of failing. */
static void
test_io_read_all_nonblocking_waits(void)
{
	int fds[2];
	REQUIRE(unix_pair(fds) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		alarm(10);
		close(fds[0]);
		sleep_ms(100);
		if (write(fds[1], "late", 4) != 4)
			_exit(1);
		sleep_ms(50);
		if (write(fds[1], "r", 1) != 1)
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	set_nonblock_raw(fds[0]);
	char buf[8] = {0};
	CHECK_EQ(pbx_read_all(fds[0], buf, 5, -1), 5);
	CHECK(memcmp(buf, "later", 5) == 0);
	close(fds[0]);
	CHECK_EQ(reap(pid), 0);
}

static void
test_io_read_some_write_some(void)
{
	int fds[2];
	REQUIRE(unix_pair(fds) == 0);
	CHECK_EQ(pbx_write_some(fds[0], "abc", 3), 3);
	char buf[8] = {0};
	CHECK_EQ(pbx_read_some(fds[1], buf, sizeof buf), 3);
	CHECK(memcmp(buf, "abc", 3) == 0);
	set_nonblock_raw(fds[1]);
	CHECK_EQ(pbx_read_some(fds[1], buf, sizeof buf), -EAGAIN);
	close(fds[0]);
	CHECK_EQ(pbx_read_some(fds[1], buf, sizeof buf), 0);
	close(fds[1]);
	CHECK_EQ(pbx_read_some(fds[1], buf, sizeof buf), -EBADF);
	CHECK_EQ(pbx_write_some(fds[1], buf, 1), -EBADF);

	/* write_some on a pipe works too. */
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
	CHECK_EQ(pbx_write_some(p[1], "xy", 2), 2);
	CHECK_EQ(pbx_read_some(p[0], buf, sizeof buf), 2);
	close(p[0]);
	close(p[1]);
}

static void
default_sigpipe(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
}

/* SIGPIPE at its default (terminate): writing to a closed socket must give
 * -EPIPE and leave us alive. */
static void
test_io_write_some_epipe_no_sigpipe(void)
{
	default_sigpipe();
	int fds[2];
	REQUIRE(unix_pair(fds) == 0);
	close(fds[1]);
	CHECK_EQ(pbx_write_some(fds[0], "x", 1), -EPIPE);
	CHECK_EQ(pbx_write_all(fds[0], "xyz", 3), -EPIPE);
	close(fds[0]);

	/* TCP: the first write may still go out; later ones fail. */
	REQUIRE(tcp_pair(fds) == 0);
	close(fds[1]);
	ssize_t r = 0;
	for (int i = 0; i < 50 && r >= 0; i++) {
		r = pbx_write_some(fds[0], "data", 4);
		if (r >= 0)
			sleep_ms(10);
	}
	CHECK(r == -EPIPE || r == -ECONNRESET);
	r = pbx_write_some(fds[0], "data", 4);
	CHECK(r == -EPIPE || r == -ECONNRESET);
	close(fds[0]);
}

static void
test_io_shutdown_write(void)
{
	int fds[2];
	REQUIRE(tcp_pair(fds) == 0);
	CHECK_EQ(write(fds[0], "req", 3), 3);
	CHECK_EQ(pbx_shutdown_write(fds[0]), 0);
	char buf[8] = {0};
	CHECK_EQ(recv_exact(fds[1], buf, 3, 5000), 3);
	CHECK(sees_eof(fds[1], 5000));
	/* The other direction still works. */
	CHECK_EQ(write(fds[1], "resp", 4), 4);
	CHECK_EQ(recv_exact(fds[0], buf, 4, 5000), 4);
	CHECK(memcmp(buf, "resp", 4) == 0);
	close(fds[0]);
	close(fds[1]);
	CHECK_EQ(pbx_shutdown_write(fds[0]), -EBADF);
}

/* ---------------------------------------------------------------- */
/* pbx_relay: in a forked child; the test is both the local user (the
 * pipes) and the TCP peer.                                           */
/* ---------------------------------------------------------------- */

struct relay_result {
	int rc;
	int where;
	struct pbx_relay_stats stats;
};

struct relay_run {
	pid_t pid;
	int in_w;  /* we write: the relay's in_fd */
	int out_r; /* we read: the relay's out_fd */
	int peer;  /* the far end of the relay's socket */
	int res_r; /* the child's relay_result */
};

static int
relay_start(struct relay_run *run, int flags)
{
	int in[2], out[2], res[2], tcp[2];
	if (pipe2(in, O_CLOEXEC) != 0)
		return -1;
	if (pipe2(out, O_CLOEXEC) != 0)
		goto out_in;
	if (pipe2(res, O_CLOEXEC) != 0)
		goto out_out;
	if (tcp_pair(tcp) != 0)
		goto out_res;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		goto out_tcp;
	if (pid == 0) {
		alarm(15);
		signal(SIGPIPE, SIG_IGN);
		close(in[1]);
		close(out[0]);
		close(res[0]);
		close(tcp[0]);
		struct relay_result r = {.where = -1};
		r.rc =
		    pbx_relay(in[0], out[1], tcp[1], flags, &r.stats, &r.where);
		if (write(res[1], &r, sizeof r) != (ssize_t)sizeof r)
			_exit(1);
		_exit(0);
	}
	close(in[0]);
	close(out[1]);
	close(res[1]);
	close(tcp[1]);
	run->pid = pid;
	run->in_w = in[1];
	run->out_r = out[0];
	run->peer = tcp[0];
	run->res_r = res[0];
	return 0;
out_tcp:
	close(tcp[0]);
	close(tcp[1]);
out_res:
	close(res[0]);
	close(res[1]);
out_out:
	close(out[0]);
	close(out[1]);
out_in:
	close(in[0]);
	close(in[1]);
	return -1;
}

/* True when the relay has returned (its result is readable). */
static bool
relay_ended(struct relay_run *run, int timeout_ms)
{
	struct pollfd p = {.fd = run->res_r, .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1;
}

/* Wait for the result, reap the child and close what is still open. */
static bool
relay_finish(struct relay_run *run, struct relay_result *r, int timeout_ms)
{
	bool ok = relay_ended(run, timeout_ms);
	if (ok)
		ok = read(run->res_r, r, sizeof *r) == (ssize_t)sizeof *r;
	if (!ok)
		kill(run->pid, SIGKILL);
	if (reap(run->pid) != 0)
		ok = false;
	int *fds[] = {&run->in_w, &run->out_r, &run->peer, &run->res_r};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	return ok;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* A poll-driven pump: writers push their data then close or shut down;
 * readers collect until end of stream. */
enum { END_NONE, END_CLOSE, END_SHUT };
struct wstream {
	int *fd;
	const uint8_t *data;
	size_t len, off;
	int end;
	bool done;
};
struct rstream {
	int fd;
	uint8_t *buf;
	size_t cap, len;
	bool eof;
};

static bool
pump(struct wstream *w, size_t nw, struct rstream *r, size_t nr, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	for (;;) {
		struct pollfd p[8];
		void *who[8];
		size_t n = 0;
		for (size_t i = 0; i < nw; i++) {
			if (!w[i].done && w[i].off == w[i].len) {
				if (w[i].end == END_CLOSE)
					close_fd(w[i].fd);
				else if (w[i].end == END_SHUT)
					shutdown(*w[i].fd, SHUT_WR);
				w[i].done = true;
			}
			if (!w[i].done) {
				p[n] = (struct pollfd){*w[i].fd, POLLOUT, 0};
				who[n++] = &w[i];
			}
		}
		for (size_t i = 0; i < nr; i++)
			if (!r[i].eof) {
				p[n] = (struct pollfd){r[i].fd, POLLIN, 0};
				who[n++] = &r[i];
			}
		if (n == 0)
			return true;
		int left = (int)(end - now_ms());
		if (left <= 0)
			return false;
		if (poll(p, n, left) < 0 && errno != EINTR)
			return false;
		for (size_t k = 0; k < n; k++) {
			if (p[k].revents == 0)
				continue;
			if (p[k].events == POLLOUT) {
				struct wstream *s = who[k];
				size_t chunk = s->len - s->off;
				if (chunk > 65536)
					chunk = 65536;
				ssize_t m =
				    write(*s->fd, s->data + s->off, chunk);
				if (m > 0)
					s->off += (size_t)m;
				else if (errno != EAGAIN && errno != EINTR)
					return false;
			} else {
				struct rstream *s = who[k];
				if (s->len == s->cap) {
					char c;
					ssize_t m = read(s->fd, &c, 1);
					if (m == 0)
						s->eof = true;
					else if (m > 0)
						return false; /* too much */
					continue;
				}
				ssize_t m = read(
				    s->fd, s->buf + s->len, s->cap - s->len);
				if (m > 0)
					s->len += (size_t)m;
				else if (m == 0)
					s->eof = true;
				else if (errno != EAGAIN && errno != EINTR)
					return false;
			}
		}
	}
}

static void
test_io_relay_both_ways_byte_exact(void)
{
	/*
	 * The peer half-closes when its own data is sent, which may be
	 * before ours has all gone: without WAIT_LOCAL the relay would end
	 * there (as documented), so ask it to finish the local side.
	 */
	struct relay_run run;
	REQUIRE(relay_start(&run, PBX_RELAY_WAIT_LOCAL) == 0);

	const size_t na = 1u << 20, nb = (1u << 20) + 12345;
	uint8_t *a = make_pattern(na, 3), *b = make_pattern(nb, 4);
	uint8_t *ga = malloc(na), *gb = malloc(nb);
	REQUIRE(a && b && ga && gb);
	set_nonblock_raw(run.in_w);
	set_nonblock_raw(run.out_r);
	set_nonblock_raw(run.peer);
	struct wstream w[2] = {
	    {&run.in_w, a, na, 0, END_CLOSE, false},
	    {&run.peer, b, nb, 0, END_SHUT, false},
	};
	struct rstream r[2] = {
	    {run.peer, ga, na, 0, false},
	    {run.out_r, gb, nb, 0, false},
	};
	CHECK(pump(w, 2, r, 2, 15000));
	CHECK_EQ(r[0].len, na);
	CHECK(r[0].eof); /* in_fd's end became a FIN */
	CHECK_EQ(pattern_mismatch(ga, r[0].len, 3), r[0].len);
	CHECK_EQ(r[1].len, nb);
	CHECK(r[1].eof);
	CHECK_EQ(pattern_mismatch(gb, r[1].len, 4), r[1].len);
	struct relay_result res;
	CHECK(relay_finish(&run, &res, 5000));
	CHECK_EQ(res.rc, 0);
	CHECK_EQ(res.stats.to_socket, na);
	CHECK_EQ(res.stats.from_socket, nb);
	free(a);
	free(b);
	free(ga);
	free(gb);
}

static void
test_io_relay_stdin_eof_half_closes(void)
{
	struct relay_run run;
	REQUIRE(relay_start(&run, 0) == 0);
	CHECK_EQ(write(run.in_w, "question", 8), 8);
	close_fd(&run.in_w);
	char buf[32] = {0};
	CHECK_EQ(recv_exact(run.peer, buf, 8, 5000), 8);
	CHECK(memcmp(buf, "question", 8) == 0);
	CHECK(sees_eof(run.peer, 5000)); /* the FIN */
	/* The relay keeps reading the socket after the half-close. */
	CHECK(!relay_ended(&run, 100));
	CHECK_EQ(write(run.peer, "late reply", 10), 10);
	memset(buf, 0, sizeof buf);
	CHECK_EQ(recv_exact(run.out_r, buf, 10, 5000), 10);
	CHECK(memcmp(buf, "late reply", 10) == 0);
	CHECK(!relay_ended(&run, 50));
	close_fd(&run.peer);
	CHECK(sees_eof(run.out_r, 5000));
	struct relay_result res;
	CHECK(relay_finish(&run, &res, 5000));
	CHECK_EQ(res.rc, 0);
	CHECK_EQ(res.stats.to_socket, 8);
	CHECK_EQ(res.stats.from_socket, 10);
}

static void
test_io_relay_peer_close_ends(void)
{
	struct relay_run run;
	REQUIRE(relay_start(&run, 0) == 0);
	CHECK_EQ(write(run.in_w, "hi", 2), 2);
	char buf[8] = {0};
	CHECK_EQ(recv_exact(run.peer, buf, 2, 5000), 2);
	CHECK(memcmp(buf, "hi", 2) == 0);
	CHECK_EQ(write(run.peer, "bye", 3), 3);
	close_fd(&run.peer);
	/* in_w stays open, yet the relay ends, having written "bye". */
	CHECK(relay_ended(&run, 5000));
	memset(buf, 0, sizeof buf);
	CHECK_EQ(recv_exact(run.out_r, buf, 3, 5000), 3);
	CHECK(memcmp(buf, "bye", 3) == 0);
	CHECK(sees_eof(run.out_r, 5000));
	struct relay_result res;
	CHECK(relay_finish(&run, &res, 1000));
	CHECK_EQ(res.rc, 0);
	CHECK_EQ(res.stats.to_socket, 2);
	CHECK_EQ(res.stats.from_socket, 3);
}

/* The peer sends a lot and closes at once: every byte still comes out. */
static void
test_io_relay_peer_close_flushes_all(void)
{
	struct relay_run run;
	REQUIRE(relay_start(&run, 0) == 0);
	const size_t n = 3u << 20;
	uint8_t *data = make_pattern(n, 5), *got = malloc(n);
	REQUIRE(data && got);
	set_nonblock_raw(run.peer);
	set_nonblock_raw(run.out_r);
	struct wstream w = {&run.peer, data, n, 0, END_CLOSE, false};
	struct rstream r = {run.out_r, got, n, 0, false};
	CHECK(pump(&w, 1, &r, 1, 15000));
	CHECK_EQ(r.len, n);
	CHECK(r.eof);
	CHECK_EQ(pattern_mismatch(got, r.len, 5), r.len);
	struct relay_result res;
	CHECK(relay_finish(&run, &res, 5000));
	CHECK_EQ(res.rc, 0);
	CHECK_EQ(res.stats.to_socket, 0);
	CHECK_EQ(res.stats.from_socket, n);
	free(data);
	free(got);
}

static void
test_io_relay_wait_local(void)
{
	struct relay_run run;
	REQUIRE(relay_start(&run, PBX_RELAY_WAIT_LOCAL) == 0);
	CHECK_EQ(write(run.peer, "x", 1), 1);
	CHECK_EQ(shutdown(run.peer, SHUT_WR), 0);
	char buf[8] = {0};
	CHECK_EQ(recv_exact(run.out_r, buf, 1, 5000), 1);
	CHECK_EQ(buf[0], 'x');
	/* The socket has ended, but in_fd has not: the relay goes on. */
	CHECK(!relay_ended(&run, 200));
	CHECK_EQ(write(run.in_w, "tail", 4), 4);
	CHECK_EQ(recv_exact(run.peer, buf, 4, 5000), 4);
	CHECK(memcmp(buf, "tail", 4) == 0);
	close_fd(&run.in_w);
	CHECK(sees_eof(run.peer, 5000));
	struct relay_result res;
	CHECK(relay_finish(&run, &res, 5000));
	CHECK_EQ(res.rc, 0);
	CHECK_EQ(res.stats.to_socket, 4);
	CHECK_EQ(res.stats.from_socket, 1);
}

static void
test_io_relay_out_epipe_ends(void)
{
	struct relay_run run;
	REQUIRE(relay_start(&run, 0) == 0);
	close_fd(&run.out_r);
	CHECK_EQ(write(run.peer, "data", 4), 4);
	/* in_w and the peer stay open: only the EPIPE can end it. */
	struct relay_result res = {0};
	CHECK(relay_finish(&run, &res, 5000));
	CHECK_EQ(res.rc, -EPIPE);
	CHECK_EQ(res.where, 0);
}

static void
test_io_relay_socket_reset(void)
{
	struct relay_run run;
	REQUIRE(relay_start(&run, 0) == 0);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	CHECK_EQ(
	    setsockopt(run.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
	close_fd(&run.peer);
	struct relay_result res = {0};
	CHECK(relay_finish(&run, &res, 5000));
	CHECK_EQ(res.rc, -ECONNRESET);
	CHECK_EQ(res.where, 1);
}

CHECK_MAIN(TEST(test_io_write_all_socketpair), TEST(test_io_write_all_tcp),
    TEST(test_io_read_all_socketpair), TEST(test_io_read_all_tcp),
    TEST(test_io_read_all_timeout), TEST(test_io_read_all_timeout_is_total),
    TEST(test_io_read_all_short_at_eof),
    TEST(test_io_read_all_nonblocking_waits),
    TEST(test_io_read_some_write_some),
    TEST(test_io_write_some_epipe_no_sigpipe), TEST(test_io_shutdown_write),
    TEST(test_io_relay_both_ways_byte_exact),
    TEST(test_io_relay_stdin_eof_half_closes),
    TEST(test_io_relay_peer_close_ends),
    TEST(test_io_relay_peer_close_flushes_all), TEST(test_io_relay_wait_local),
    TEST(test_io_relay_out_epipe_ends), TEST(test_io_relay_socket_reset))
