/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the stream module: reads, queued writes, shutdown, close and
 * fd release over socketpairs, loopback TCP, pipes and a regular file, and a
 * transport of the test's own that holds bytes above the fd (as TLS will).
 */
#include "check.h"
#include "pbx.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define MiB ((size_t)1 << 20)

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A byte pattern that does not repeat at any power-of-two period. */
static char
pat(size_t i)
{
	uint32_t x = (uint32_t)i * 2654435761u + 40503u;
	return (char)((x >> 24) ^ (x >> 11));
}

static char *
make_pattern(size_t len)
{
	char *p = malloc(len ? len : 1);
	if (p != NULL)
		for (size_t i = 0; i < len; i++)
			p[i] = pat(i);
	return p;
}

static int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* A socketpair, both ends non-blocking and close-on-exec. */
static int
unix_pair(int sv[2])
{
	return socketpair(
	    AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
}

/* Loopback TCP on a port the kernel picks (read back), made with plain
 * libc; both ends non-blocking. */
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
	    getsockname(l, (struct sockaddr *)&a, &len) != 0 || a.sin_port == 0)
		goto out_close_listener;
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0)
		goto out_close_listener;
	if (connect(fds[0], (struct sockaddr *)&a, sizeof a) != 0)
		goto out_close_client;
	fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fds[1] < 0)
		goto out_close_client;
	close(l);
	if (set_nonblock(fds[0]) != 0 || set_nonblock(fds[1]) != 0) {
		close(fds[1]);
		close(fds[0]);
		return -1;
	}
	return 0;
out_close_client:
	close(fds[0]);
out_close_listener:
	close(l);
	return -1;
}

static bool
fd_ready(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	return poll(&p, 1, 0) == 1 && (p.revents & events) != 0;
}

static bool
fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

/* Read exactly n bytes within timeout_ms; fewer at end of stream. */
static ssize_t
recv_exact(int fd, void *buf, size_t n, int timeout_ms)
{
	size_t got = 0;
	int64_t end = now_ms() + timeout_ms;
	while (got < n) {
		int left = (int)(end - now_ms());
		if (left <= 0)
			break;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Read to the end: the byte count (the first cap bytes into buf, which may
 * be NULL), or -ETIMEDOUT when no end came in timeout_ms. *end says how it
 * ended: 0 at end of stream, or -errno (-ECONNRESET). */
static ssize_t
recv_to_end(int fd, char *buf, size_t cap, int timeout_ms, int *end)
{
	char chunk[65536];
	size_t got = 0;
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		int left = (int)(deadline - now_ms());
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0) {
			*end = r < 0 ? -errno : 0;
			return (ssize_t)got;
		}
		for (ssize_t i = 0; i < r; i++, got++)
			if (buf != NULL && got < cap)
				buf[got] = chunk[i];
	}
}

/* The same, where only an end of stream will do: else -errno. */
static ssize_t
recv_to_eof(int fd, char *buf, size_t cap, int timeout_ms)
{
	int end = 0;
	ssize_t n = recv_to_end(fd, buf, cap, timeout_ms, &end);
	return end != 0 ? end : n;
}

/* Write into fd until the kernel takes no more (fd non-blocking). */
static size_t
fill(int fd)
{
	static const char zeros[65536];
	static const size_t sizes[] = {sizeof zeros, 4096, 1};
	size_t total = 0;
	for (size_t i = 0; i < 3; i++) {
		for (;;) {
			ssize_t n = send(fd, zeros, sizes[i], MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			total += (size_t)n;
		}
	}
	return total;
}

/* The runner ignores SIGPIPE; these tests want its default (death). */
static void
sigpipe_default(void)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* A timer that ends a run that went wrong. */
struct guard {
	struct pbx_timer t;
	bool fired;
};

static void
guard_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct guard *g = (struct guard *)t;
	g->fired = true;
	pbx_loop_stop(loop);
}

/* Run until a callback stops the loop or it has nothing left to watch;
 * false when the guard (ms) ended it instead. */
static bool
run_for(struct pbx_loop *loop, uint64_t ms)
{
	struct guard g = {.t.cb = guard_cb};
	if (pbx_timer_start(loop, &g.t, ms) != 0)
		CHECK_FAILED("guard timer did not start");
	if (pbx_loop_run(loop) != 0)
		CHECK_FAILED("pbx_loop_run failed");
	pbx_timer_stop(loop, &g.t);
	return !g.fired;
}

/* ---------------------------------------------------------------- */
/* A recording stream                                                 */
/* ---------------------------------------------------------------- */

/* What the callbacks saw. */
struct counts {
	int allocs, reads, eofs, errors;
	ssize_t err;   /* the last negative n */
	size_t ngot;   /* bytes received */
	char head[16]; /* the first bytes received */
	int bad_buf;   /* reads not into the alloc's buffer, or too long */
	int shutdowns, shut_status;
	int closes;
	int writes;       /* write callbacks */
	int wstatus[16];  /* their statuses, in order */
	intptr_t wid[16]; /* and each one's w->data */
	int inside;       /* callbacks run inside a stream call */
	char order[32];   /* w write, s shutdown, e eof, x error, c close */
	int norder;
};

struct rec;
typedef bool (*rec_pred)(const struct rec *r);

struct rec {
	struct pbx_stream s;
	struct counts c;
	char *abuf; /* owned: what alloc hands out */
	size_t alen;
	char *got; /* owned: every byte received */
	size_t cap;
	bool in_call;         /* the test is inside a stream call */
	rec_pred stop_if;     /* stop the loop once it holds */
	size_t want;          /* for got_want */
	bool stop_on_close;   /* ops->close stops the loop */
	bool stop_read;       /* the read callback stops reading */
	bool close_on_read;   /* the read callback closes the stream */
	bool close_on_write;  /* the first write callback closes it */
	struct counts *final; /* ops->close copies c here */
};

static bool
got_want(const struct rec *r)
{
	return r->c.ngot >= r->want;
}

static bool
ended(const struct rec *r)
{
	return r->c.eofs + r->c.errors > 0;
}

static bool
one_write(const struct rec *r)
{
	return r->c.writes >= 1;
}

static bool
two_writes(const struct rec *r)
{
	return r->c.writes >= 2;
}

static bool
shut_down(const struct rec *r)
{
	return r->c.shutdowns >= 1;
}

static void
note(struct rec *r, char what)
{
	if (r->c.norder < (int)sizeof r->c.order - 1)
		r->c.order[r->c.norder++] = what;
	if (r->in_call)
		r->c.inside++;
}

static void
maybe_stop(struct rec *r)
{
	if (r->stop_if != NULL && r->stop_if(r))
		pbx_loop_stop(r->s.loop);
}

static void
rec_free(struct rec *r)
{
	free(r->got);
	free(r->abuf);
	free(r);
}

static void
rec_alloc(struct pbx_stream *s, char **buf, size_t *len)
{
	struct rec *r = s->data;
	r->c.allocs++;
	if (r->in_call)
		r->c.inside++;
	*buf = r->abuf;
	*len = r->alen;
}

static void
rec_keep(struct rec *r, const char *buf, size_t n)
{
	if (r->c.ngot + n > r->cap) {
		size_t cap = (r->c.ngot + n) * 2;
		char *g = realloc(r->got, cap);
		if (g == NULL) {
			CHECK_FAILED("out of memory");
			return;
		}
		r->got = g;
		r->cap = cap;
	}
	memcpy(r->got + r->c.ngot, buf, n);
	for (size_t i = 0; i < n; i++)
		if (r->c.ngot + i < sizeof r->c.head - 1)
			r->c.head[r->c.ngot + i] = buf[i];
	r->c.ngot += n;
}

static void
rec_read(struct pbx_stream *s, ssize_t n, char *buf)
{
	struct rec *r = s->data;
	if (r->in_call)
		r->c.inside++;
	if (n > 0) {
		r->c.reads++;
		if (buf != r->abuf || (size_t)n > r->alen)
			r->c.bad_buf++;
		else
			rec_keep(r, buf, (size_t)n);
	} else if (n == 0) {
		r->c.eofs++;
		note(r, 'e');
	} else {
		r->c.errors++;
		r->c.err = n;
		note(r, 'x');
	}
	if (r->stop_read)
		pbx_stream_read_stop(s);
	maybe_stop(r);
	if (r->close_on_read)
		pbx_stream_close(s);
}

static void
rec_shutdown(struct pbx_stream *s, int status)
{
	struct rec *r = s->data;
	r->c.shutdowns++;
	r->c.shut_status = status;
	note(r, 's');
	maybe_stop(r);
}

static void
rec_close(struct pbx_stream *s, int status)
{
	(void)status;
	struct rec *r = s->data;
	r->c.closes++;
	note(r, 'c');
	if (r->stop_on_close)
		pbx_loop_stop(s->loop);
	if (r->final != NULL)
		*r->final = r->c;
	/* No callback may follow: ASan sees any use of the freed stream. */
	rec_free(r);
}

static void
rec_write_cb(struct pbx_stream *s, struct pbx_write *w, int status)
{
	struct rec *r = s->data;
	int i = r->c.writes++;
	if (i < 16) {
		r->c.wstatus[i] = status;
		r->c.wid[i] = (intptr_t)w->data;
	}
	note(r, 'w');
	maybe_stop(r);
	if (r->close_on_write && i == 0)
		pbx_stream_close(s);
}

static const struct pbx_stream_ops rec_ops = {
    .alloc = rec_alloc,
    .read = rec_read,
    .shutdown = rec_shutdown,
    .close = rec_close,
};

/* A stream on fd, on the heap: ops->close frees it. */
static struct rec *
rec_new(
    struct pbx_loop *loop, int fd, const struct pbx_transport *tr, size_t alen)
{
	struct rec *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	r->abuf = malloc(alen);
	if (r->abuf == NULL) {
		free(r);
		return NULL;
	}
	r->alen = alen;
	pbx_stream_init(&r->s, loop, fd, tr, &rec_ops);
	r->s.data = r;
	return r;
}

/* Close r and run the loop until ops->close has run (once). */
static void
rec_finish(struct pbx_loop *loop, struct rec *r)
{
	struct counts fin = {0};
	r->final = &fin;
	r->stop_on_close = true;
	r->stop_if = NULL;
	pbx_stream_close(&r->s);
	if (!run_for(loop, 2000))
		CHECK_FAILED("ops->close did not run");
	if (fin.closes != 1)
		CHECK_FAILED("ops->close ran %d times", fin.closes);
}

#define CHECK_GOT(r, text)                                                     \
	do {                                                                   \
		const char *check_t_ = (text);                                 \
		size_t check_l_ = strlen(check_t_);                            \
		if ((r)->c.ngot != check_l_ ||                                 \
		    (check_l_ > 0 && memcmp((r)->got, check_t_, check_l_)))    \
			CHECK_FAILED("got \"%.*s\", want \"%s\"",              \
			    (int)(r)->c.ngot, (r)->got ? (r)->got : "",        \
			    check_t_);                                         \
	} while (0)

/* ---------------------------------------------------------------- */
/* A peer on the loop that reads slowly and checks what it gets       */
/* ---------------------------------------------------------------- */

struct peer {
	struct pbx_io io;
	const char *want; /* borrowed: the bytes expected, in order */
	size_t want_len;
	size_t n;     /* bytes read so far */
	size_t bad;   /* offset of the first wrong byte; SIZE_MAX: none */
	size_t chunk; /* at most this much per wake-up */
	bool eof;
	int err;
	const char *reply; /* at end of stream: sent, then SHUT_WR */
	bool stop_at_eof, stop_at_len;
};

static void
peer_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	(void)events;
	struct peer *p = (struct peer *)w;
	char buf[16384];
	size_t max = p->chunk < sizeof buf ? p->chunk : sizeof buf;
	ssize_t n = read(w->fd, buf, max);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (n < 0)
			p->err = -errno;
		else
			p->eof = true;
		pbx_io_stop(loop, w);
		if (n == 0 && p->reply != NULL) {
			size_t len = strlen(p->reply);
			if (write(w->fd, p->reply, len) != (ssize_t)len)
				CHECK_FAILED("peer reply: %s", strerror(errno));
			shutdown(w->fd, SHUT_WR);
		}
		if (p->stop_at_eof)
			pbx_loop_stop(loop);
		return;
	}
	for (ssize_t i = 0; i < n && p->bad == SIZE_MAX; i++) {
		size_t at = p->n + (size_t)i;
		if (at >= p->want_len || buf[i] != p->want[at])
			p->bad = at;
	}
	p->n += (size_t)n;
	if (p->stop_at_len && p->n >= p->want_len) {
		pbx_io_stop(loop, w);
		pbx_loop_stop(loop);
	}
}

static void
peer_start(struct pbx_loop *loop, struct peer *p, int fd, const char *want,
    size_t len, size_t chunk)
{
	*p = (struct peer){.io = {.fd = fd, .cb = peer_cb},
	    .want = want,
	    .want_len = len,
	    .bad = SIZE_MAX,
	    .chunk = chunk};
	if (pbx_io_start(loop, &p->io, PBX_READABLE) != 0)
		CHECK_FAILED("peer watcher did not start");
}

/* ---------------------------------------------------------------- */
/* Reading                                                            */
/* ---------------------------------------------------------------- */

static const char ALNUM[] = "0123456789abcdefghijklmnopqrstuvwxyz";

static void
test_stream_read_delivers_through_alloc(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 7);
	REQUIRE(r != NULL);
	CHECK_EQ(r->s.io.fd, sv[0]);
	CHECK(!pbx_stream_is_reading(&r->s));
	CHECK_EQ(write(sv[1], ALNUM, 36), 36);

	/* Bytes are waiting, yet nothing runs inside read_start. */
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK(pbx_stream_is_reading(&r->s));
	CHECK_EQ(r->c.allocs + r->c.reads, 0);
	r->want = 36;
	r->stop_if = got_want;
	CHECK(run_for(loop, 2000));
	CHECK_GOT(r, ALNUM);
	CHECK(r->c.reads >= 6); /* 7 bytes at most each */
	CHECK(r->c.allocs >= r->c.reads);
	CHECK_EQ(r->c.bad_buf, 0);
	CHECK_EQ(r->c.eofs + r->c.errors, 0);
	CHECK_EQ(r->s.bytes_in, 36);
	CHECK_EQ(r->s.bytes_out, 0);
	CHECK(pbx_stream_is_reading(&r->s));

	/* More, later: still reading. */
	CHECK_EQ(write(sv[1], "!", 1), 1);
	r->want = 37;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.ngot, 37);
	CHECK_EQ(r->got[36], '!');
	rec_finish(loop, r);
	close(sv[1]);
	pbx_loop_free(loop);
}

static void
test_stream_read_eof_once(void)
{
	int fds[2];
	REQUIRE(tcp_pair(fds) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, fds[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK_EQ(write(fds[1], "bye", 3), 3);
	CHECK_EQ(shutdown(fds[1], SHUT_WR), 0); /* FIN; the peer stays */
	r->stop_if = ended;
	CHECK(run_for(loop, 2000));
	CHECK_GOT(r, "bye");
	CHECK_EQ(r->c.eofs, 1);
	CHECK_EQ(r->c.errors, 0);
	CHECK_STR(r->c.order, "e");
	CHECK(!pbx_stream_is_reading(&r->s));

	/* Reading has stopped: nothing more, however long we wait. */
	int reads = r->c.reads, allocs = r->c.allocs;
	run_for(loop, 100);
	CHECK_EQ(r->c.eofs, 1);
	CHECK_EQ(r->c.reads, reads);
	CHECK_EQ(r->c.allocs, allocs);
	rec_finish(loop, r);
	close(fds[1]);
	pbx_loop_free(loop);
}

static void
test_stream_read_error_on_reset(void)
{
	int fds[2];
	REQUIRE(tcp_pair(fds) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, fds[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	CHECK_EQ(setsockopt(fds[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
	close(fds[1]); /* RST */
	r->stop_if = ended;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.errors, 1);
	CHECK_EQ(r->c.err, -ECONNRESET);
	CHECK_EQ(r->c.eofs, 0);
	CHECK_EQ(r->c.reads, 0);
	CHECK(!pbx_stream_is_reading(&r->s));
	run_for(loop, 100);
	CHECK_EQ(r->c.errors, 1);
	CHECK_EQ(r->c.eofs, 0);
	rec_finish(loop, r);
	pbx_loop_free(loop);
}

static void
test_stream_read_stop_and_restart(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK_EQ(write(sv[1], "one", 3), 3);
	r->stop_read = true; /* from inside the read callback */
	r->want = 3;
	r->stop_if = got_want;
	CHECK(run_for(loop, 2000));
	CHECK_GOT(r, "one");
	CHECK(!pbx_stream_is_reading(&r->s));

	/* Sent while not reading: not delivered. */
	r->stop_read = false;
	CHECK_EQ(write(sv[1], "two", 3), 3);
	run_for(loop, 100);
	CHECK_GOT(r, "one");

	/* Stopped from outside a callback too. */
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK(pbx_stream_is_reading(&r->s));
	pbx_stream_read_stop(&r->s);
	CHECK(!pbx_stream_is_reading(&r->s));
	run_for(loop, 100);
	CHECK_GOT(r, "one");

	/* Reading again: the bytes come, in order. */
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	r->want = 6;
	CHECK(run_for(loop, 2000));
	CHECK_GOT(r, "onetwo");
	CHECK_EQ(r->s.bytes_in, 6);
	rec_finish(loop, r);
	close(sv[1]);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* Callbacks come from the loop                                       */
/* ---------------------------------------------------------------- */

static void
test_stream_callbacks_not_inside_calls(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(write(sv[1], "x", 1), 1);
	struct pbx_write w = {
	    .buf = "abc", .len = 3, .cb = rec_write_cb, .data = (void *)1};

	r->in_call = true;
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0); /* on an empty queue */
	CHECK_EQ(pbx_stream_write_copy(&r->s, "de", 2, rec_write_cb), 0);
	CHECK_EQ(pbx_stream_shutdown(&r->s), 0);
	r->in_call = false;
	CHECK_EQ(r->c.allocs + r->c.reads + r->c.writes + r->c.shutdowns, 0);
	CHECK_EQ(r->c.inside, 0);
	CHECK_EQ(pbx_stream_queued(&r->s), 5);

	r->stop_if = shut_down;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.writes, 2);
	CHECK_EQ(r->c.wstatus[0], 0);
	CHECK_EQ(r->c.wstatus[1], 0);
	CHECK_EQ(r->c.wid[0], 1);
	CHECK_EQ(r->c.shutdowns, 1);
	CHECK_EQ(r->c.shut_status, 0);
	CHECK_STR(r->c.order, "wws");
	char buf[16];
	CHECK_EQ(recv_to_eof(sv[1], buf, sizeof buf, 2000), 5);
	CHECK(memcmp(buf, "abcde", 5) == 0);
	if (r->c.ngot == 0) {
		r->want = 1;
		r->stop_if = got_want;
		CHECK(run_for(loop, 2000));
	}
	CHECK_GOT(r, "x");
	CHECK_EQ(r->c.inside, 0);
	rec_finish(loop, r);
	close(sv[1]);
	pbx_loop_free(loop);
}

static void
test_stream_close_completes_from_loop(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	struct pbx_write w = {
	    .buf = "never", .len = 5, .cb = rec_write_cb, .data = (void *)7};
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0);
	struct counts fin = {0};
	r->final = &fin;
	r->stop_on_close = true;

	r->in_call = true;
	pbx_stream_close(&r->s);
	r->in_call = false; /* r stays valid until ops->close */
	CHECK_EQ(r->c.closes, 0);
	CHECK_EQ(r->c.writes, 0);
	CHECK_EQ(r->c.inside, 0);
	CHECK(!fd_is_open(sv[0]));
	CHECK(!pbx_stream_is_reading(&r->s));

	CHECK(run_for(loop, 2000));
	CHECK_EQ(fin.closes, 1);
	CHECK_EQ(fin.writes, 1);
	CHECK_EQ(fin.wstatus[0], -ECANCELED);
	CHECK_EQ(fin.wid[0], 7);
	CHECK_STR(fin.order, "wc");
	CHECK_EQ(fin.inside, 0);
	/* A cancelled write sent nothing. */
	CHECK_EQ(recv_to_eof(sv[1], NULL, 0, 2000), 0);
	run_for(loop, 50); /* nothing may touch the freed stream */
	close(sv[1]);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* try_read, try_write                                                */
/* ---------------------------------------------------------------- */

static void
test_stream_try_read_try_write(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	char buf[16];
	CHECK_EQ(pbx_stream_try_read(&r->s, buf, sizeof buf), -EAGAIN);
	CHECK_EQ(write(sv[1], "abc", 3), 3);
	CHECK_EQ(pbx_stream_try_read(&r->s, buf, sizeof buf), 3);
	CHECK(memcmp(buf, "abc", 3) == 0);
	CHECK_EQ(pbx_stream_try_read(&r->s, buf, sizeof buf), -EAGAIN);
	CHECK_EQ(write(sv[1], "0123456789", 10), 10);
	CHECK_EQ(pbx_stream_try_read(&r->s, buf, 4), 4);
	CHECK(memcmp(buf, "0123", 4) == 0);
	CHECK_EQ(pbx_stream_try_read(&r->s, buf, sizeof buf), 6);
	CHECK(memcmp(buf, "456789", 6) == 0);
	CHECK_EQ(r->s.bytes_in, 13);

	CHECK_EQ(pbx_stream_try_write(&r->s, "hello", 5), 5);
	CHECK_EQ(recv_exact(sv[1], buf, 5, 1000), 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	CHECK_EQ(r->s.bytes_out, 5);

	/* Until the socket is full, then -EAGAIN; the kernel has it all. */
	static const char chunk[65536];
	size_t took = 0;
	ssize_t n;
	for (;;) {
		n = pbx_stream_try_write(&r->s, chunk, sizeof chunk);
		if (n <= 0)
			break;
		took += (size_t)n;
	}
	CHECK_EQ(n, -EAGAIN);
	CHECK(took > 0);
	CHECK_EQ(pbx_stream_try_write(&r->s, "x", 1), -EAGAIN);
	CHECK_EQ(r->s.bytes_out, 5 + took);
	size_t drained = 0;
	for (;;) {
		char big[65536];
		ssize_t k = read(sv[1], big, sizeof big);
		if (k <= 0)
			break;
		drained += (size_t)k;
	}
	CHECK_EQ(drained, took);
	CHECK_EQ(r->c.allocs + r->c.reads + r->c.writes, 0);

	close(sv[1]);
	CHECK_EQ(pbx_stream_try_read(&r->s, buf, sizeof buf), 0);
	rec_finish(loop, r);
	pbx_loop_free(loop);
}

static void
test_stream_try_write_waits_behind_queue(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	struct pbx_write w = {.buf = "first-", .len = 6, .cb = rec_write_cb};
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0);
	CHECK_EQ(pbx_stream_try_write(&r->s, "second", 6), -EAGAIN);
	CHECK_EQ(pbx_stream_queued(&r->s), 6);
	r->stop_if = one_write;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.wstatus[0], 0);
	CHECK_EQ(pbx_stream_queued(&r->s), 0);
	CHECK_EQ(pbx_stream_try_write(&r->s, "third", 5), 5);
	char buf[32];
	CHECK_EQ(recv_exact(sv[1], buf, 11, 1000), 11);
	CHECK(memcmp(buf, "first-third", 11) == 0);
	CHECK(!fd_ready(sv[1], POLLIN));
	CHECK_EQ(r->s.bytes_out, 11);
	rec_finish(loop, r);
	close(sv[1]);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* Queued writes                                                      */
/* ---------------------------------------------------------------- */

static bool
four_writes(const struct rec *r)
{
	return r->c.writes >= 4;
}

static void
test_stream_writes_in_order(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	struct pbx_write w[3] = {
	    {.buf = "alpha ", .len = 6, .cb = rec_write_cb, .data = (void *)1},
	    {.buf = "beta ", .len = 5, .cb = rec_write_cb, .data = (void *)2},
	    {.buf = "gamma", .len = 5, .cb = rec_write_cb, .data = (void *)3},
	};
	char tmp[8];
	memcpy(tmp, "[copy1]", 7);
	CHECK_EQ(pbx_stream_write(&r->s, &w[0]), 0);
	CHECK_EQ(pbx_stream_write_copy(&r->s, tmp, 7, rec_write_cb), 0);
	memset(tmp, 'X', sizeof tmp); /* the stream has its own copy */
	CHECK_EQ(pbx_stream_write(&r->s, &w[1]), 0);
	CHECK_EQ(pbx_stream_write_copy(&r->s, "[c2]", 4, NULL), 0);
	CHECK_EQ(pbx_stream_write(&r->s, &w[2]), 0);
	CHECK_EQ(pbx_stream_queued(&r->s), 27);
	r->stop_if = four_writes;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.writes, 4);
	CHECK_EQ(r->c.wid[0], 1);
	CHECK_EQ(r->c.wid[1], 0); /* the copy's own request */
	CHECK_EQ(r->c.wid[2], 2);
	CHECK_EQ(r->c.wid[3], 3);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(r->c.wstatus[i], 0);
	char buf[32];
	CHECK_EQ(recv_exact(sv[1], buf, 27, 1000), 27);
	CHECK(memcmp(buf, "alpha [copy1]beta [c2]gamma", 27) == 0);
	CHECK(!fd_ready(sv[1], POLLIN));
	CHECK_EQ(pbx_stream_queued(&r->s), 0);
	CHECK_EQ(r->s.bytes_out, 27);
	CHECK_EQ(r->s.bytes_in, 0);
	rec_finish(loop, r);
	close(sv[1]);
	pbx_loop_free(loop);
}

static void
test_stream_large_write_backpressure(void)
{
	const size_t total = 6 * MiB;
	char *data = make_pattern(total);
	REQUIRE(data != NULL);
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	struct pbx_write w1 = {
	    .buf = data, .len = 3 * MiB, .cb = rec_write_cb, .data = (void *)1};
	struct pbx_write w3 = {.buf = data + 4 * MiB,
	    .len = 2 * MiB,
	    .cb = rec_write_cb,
	    .data = (void *)3};
	CHECK_EQ(pbx_stream_write(&r->s, &w1), 0);
	CHECK_EQ(
	    pbx_stream_write_copy(&r->s, data + 3 * MiB, MiB, rec_write_cb), 0);
	CHECK_EQ(pbx_stream_write(&r->s, &w3), 0);
	CHECK_EQ(pbx_stream_queued(&r->s), total);

	/* The peer does not read: the kernel takes what fits, the rest
	 * stays queued, and the gauge says how much. */
	run_for(loop, 100);
	size_t q = pbx_stream_queued(&r->s);
	CHECK(q > 0);
	CHECK(q < total);
	CHECK_EQ(r->c.writes, 0);
	run_for(loop, 50);
	CHECK_EQ(pbx_stream_queued(&r->s), q);
	/* What the peer can read now is exactly what left the queue. */
	struct peer p;
	peer_start(loop, &p, sv[1], data, total, SIZE_MAX);
	pbx_io_stop(loop, &p.io);
	for (;;) {
		size_t before = p.n;
		peer_cb(loop, &p.io, PBX_READABLE);
		if (p.n == before)
			break;
	}
	CHECK_EQ(p.bad, SIZE_MAX);
	CHECK_EQ(q + p.n, total);
	CHECK_EQ(r->s.bytes_out, p.n);

	/* Then it reads slowly: 4 KiB a wake-up. */
	size_t already = p.n;
	peer_start(loop, &p, sv[1], data, total, 4096);
	p.n = already;
	p.stop_at_len = true;
	CHECK(run_for(loop, 15000));
	CHECK_EQ(p.n, total);
	CHECK_EQ(p.bad, SIZE_MAX);
	CHECK_EQ(r->c.writes, 3);
	CHECK_EQ(r->c.wid[0], 1);
	CHECK_EQ(r->c.wid[1], 0);
	CHECK_EQ(r->c.wid[2], 3);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(r->c.wstatus[i], 0);
	CHECK_EQ(pbx_stream_queued(&r->s), 0);
	CHECK_EQ(r->s.bytes_out, total);
	rec_finish(loop, r);
	close(sv[1]);
	pbx_loop_free(loop);
	free(data);
}

/* ---------------------------------------------------------------- */
/* Shutdown                                                           */
/* ---------------------------------------------------------------- */

static void
test_stream_shutdown_after_queue(void)
{
	const size_t big = 2 * MiB;
	char *want = make_pattern(big + 4);
	REQUIRE(want != NULL);
	memcpy(want + big, "tail", 4);
	int fds[2];
	REQUIRE(tcp_pair(fds) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, fds[0], NULL, 64);
	REQUIRE(r != NULL);
	struct pbx_write w = {.buf = want, .len = big, .cb = rec_write_cb};
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0);
	CHECK_EQ(pbx_stream_write_copy(&r->s, "tail", 4, rec_write_cb), 0);
	CHECK_EQ(pbx_stream_shutdown(&r->s), 0);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK_EQ(r->c.shutdowns, 0);

	/* The peer reads to its end of stream, then answers and leaves. */
	struct peer p;
	peer_start(loop, &p, fds[1], want, big + 4, 16384);
	p.reply = "late";
	r->stop_if = ended;
	CHECK(run_for(loop, 10000));
	CHECK(p.eof);
	CHECK_EQ(p.err, 0);
	CHECK_EQ(p.n, big + 4);
	CHECK_EQ(p.bad, SIZE_MAX);
	CHECK_EQ(r->c.writes, 2);
	CHECK_EQ(r->c.wstatus[0], 0);
	CHECK_EQ(r->c.wstatus[1], 0);
	CHECK_EQ(r->c.shutdowns, 1);
	CHECK_EQ(r->c.shut_status, 0);
	CHECK_STR(r->c.order, "wwse");
	/* Reading went on after the shutdown. */
	CHECK_GOT(r, "late");
	CHECK_EQ(r->c.errors, 0);
	CHECK_EQ(r->s.bytes_out, big + 4);
	rec_finish(loop, r);
	close(fds[1]);
	pbx_loop_free(loop);
	free(want);
}

/* ---------------------------------------------------------------- */
/* Close                                                              */
/* ---------------------------------------------------------------- */

static void
test_stream_close_cancels_and_frees(void)
{
	const size_t big = 4 * MiB;
	char *data = make_pattern(big);
	REQUIRE(data != NULL);
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	struct pbx_write w = {
	    .buf = data, .len = big, .cb = rec_write_cb, .data = (void *)1};
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0);
	CHECK_EQ(pbx_stream_write_copy(&r->s, "tail", 4, rec_write_cb), 0);
	CHECK_EQ(pbx_stream_shutdown(&r->s), 0);
	CHECK_EQ(write(sv[1], "ping", 4), 4);
	run_for(loop, 100); /* the peer does not read: writes stay queued */
	CHECK_GOT(r, "ping");
	CHECK_EQ(r->c.writes, 0);
	CHECK(r->s.bytes_out > 0);
	CHECK(r->s.bytes_out < big);

	/* Events due for the stream when it closes: bytes to read. */
	CHECK_EQ(write(sv[1], "pong", 4), 4);
	struct counts fin = {0};
	r->final = &fin;
	r->stop_on_close = true;
	pbx_stream_close(&r->s);
	CHECK(!fd_is_open(sv[0]));
	CHECK_EQ(r->c.closes, 0);
	CHECK_EQ(r->c.writes, 0);
	uint64_t out = r->s.bytes_out;

	CHECK(run_for(loop, 2000));
	CHECK_EQ(fin.closes, 1);
	CHECK_EQ(fin.writes, 2);
	CHECK_EQ(fin.wid[0], 1);
	CHECK_EQ(fin.wstatus[0], -ECANCELED);
	CHECK_EQ(fin.wstatus[1], -ECANCELED);
	CHECK_EQ(fin.ngot, 4); /* "pong" never delivered */
	CHECK_EQ(fin.eofs + fin.errors, 0);
	REQUIRE(fin.norder >= 3);
	CHECK_EQ(fin.order[fin.norder - 1], 'c');
	run_for(loop, 100); /* nothing may touch the freed stream */
	/* The peer gets what was written before the close, then its end
	 * (a reset: "pong" was left unread, and AF_UNIX says so). */
	int end = 0;
	CHECK_EQ(recv_to_end(sv[1], NULL, 0, 5000, &end), (ssize_t)out);
	CHECK(end == 0 || end == -ECONNRESET);
	close(sv[1]);
	pbx_loop_free(loop);
	free(data);
}

static void
test_stream_close_in_read_callback(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	size_t filled = fill(sv[0]);
	REQUIRE(filled > 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	struct pbx_write w = {.buf = "stuck", .len = 5, .cb = rec_write_cb};
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0);
	run_for(loop, 50); /* the socket is full: the write stays queued */
	CHECK_EQ(r->c.writes, 0);
	struct counts fin = {0};
	r->final = &fin;
	r->stop_on_close = true;
	r->close_on_read = true;
	CHECK_EQ(write(sv[1], "abc", 3), 3);
	CHECK(run_for(loop, 2000));
	CHECK_EQ(fin.reads, 1);
	CHECK_STR(fin.head, "abc");
	CHECK_EQ(fin.closes, 1);
	CHECK_EQ(fin.writes, 1);
	CHECK_EQ(fin.wstatus[0], -ECANCELED);
	CHECK_STR(fin.order, "wc");
	CHECK(!fd_is_open(sv[0]));
	send(sv[1], "more", 4, MSG_NOSIGNAL); /* to a closed stream */
	run_for(loop, 100);
	CHECK_EQ(recv_to_eof(sv[1], NULL, 0, 5000), (ssize_t)filled);
	close(sv[1]);
	pbx_loop_free(loop);
}

static void
test_stream_close_in_write_callback(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	struct pbx_write w1 = {
	    .buf = "first", .len = 5, .cb = rec_write_cb, .data = (void *)1};
	struct pbx_write w2 = {
	    .buf = "second", .len = 6, .cb = rec_write_cb, .data = (void *)2};
	CHECK_EQ(pbx_stream_write(&r->s, &w1), 0);
	CHECK_EQ(pbx_stream_write(&r->s, &w2), 0);
	CHECK_EQ(pbx_stream_write_copy(&r->s, "third", 5, rec_write_cb), 0);
	struct counts fin = {0};
	r->final = &fin;
	r->stop_on_close = true;
	r->close_on_write = true;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(fin.closes, 1);
	CHECK_EQ(fin.writes, 3);
	CHECK_EQ(fin.wid[0], 1);
	CHECK_EQ(fin.wstatus[0], 0);
	CHECK_EQ(fin.wid[1], 2);
	CHECK_EQ(fin.wstatus[1], -ECANCELED);
	CHECK_EQ(fin.wstatus[2], -ECANCELED);
	CHECK_STR(fin.order, "wwwc");
	CHECK(!fd_is_open(sv[0]));
	char buf[32];
	CHECK_EQ(recv_to_eof(sv[1], buf, sizeof buf, 2000), 5);
	CHECK(memcmp(buf, "first", 5) == 0);
	run_for(loop, 50);
	close(sv[1]);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* A peer that has gone                                               */
/* ---------------------------------------------------------------- */

static bool
is_gone(int status)
{
	return status == -EPIPE || status == -ECONNRESET;
}

static void
test_stream_write_to_gone_peer_no_sigpipe(void)
{
	sigpipe_default();
	int a[2], b[2];
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	close(a[1]);
	close(b[1]);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *ra = rec_new(loop, a[0], NULL, 64);
	struct rec *rb = rec_new(loop, b[0], NULL, 64);
	REQUIRE(ra != NULL && rb != NULL);
	ssize_t n = pbx_stream_try_write(&ra->s, "x", 1);
	CHECK(is_gone((int)n));
	struct pbx_write w = {.buf = "data", .len = 4, .cb = rec_write_cb};
	CHECK_EQ(pbx_stream_write(&rb->s, &w), 0);
	rb->stop_if = one_write;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(rb->c.writes, 1);
	if (!is_gone(rb->c.wstatus[0]))
		CHECK_FAILED("write status %d, want -EPIPE or -ECONNRESET",
		    rb->c.wstatus[0]);
	rec_finish(loop, ra);
	rec_finish(loop, rb);
	pbx_loop_free(loop);
}

static void
test_stream_write_to_gone_tcp_peer_no_sigpipe(void)
{
	sigpipe_default();
	const size_t big = 16 * MiB;
	char *data = make_pattern(big);
	REQUIRE(data != NULL);
	int fds[2];
	REQUIRE(tcp_pair(fds) == 0);
	close(fds[1]); /* a FIN; the bytes that follow meet a reset */
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, fds[0], NULL, 64);
	REQUIRE(r != NULL);
	struct pbx_write w1 = {.buf = data, .len = big, .cb = rec_write_cb};
	struct pbx_write w2 = {.buf = "more", .len = 4, .cb = rec_write_cb};
	CHECK_EQ(pbx_stream_write(&r->s, &w1), 0);
	CHECK_EQ(pbx_stream_write(&r->s, &w2), 0);
	r->stop_if = two_writes;
	CHECK(run_for(loop, 5000));
	CHECK_EQ(r->c.writes, 2);
	for (int i = 0; i < 2; i++)
		if (!is_gone(r->c.wstatus[i]))
			CHECK_FAILED("write %d status %d, want -EPIPE or "
				     "-ECONNRESET",
			    i, r->c.wstatus[i]);
	rec_finish(loop, r);
	pbx_loop_free(loop);
	free(data);
}

static void
/* A pipe raises SIGPIPE unless the caller ignores it (the contract; the
 * runner does): the write then fails with -EPIPE. */
test_stream_pipe_try_write_reader_gone_epipe(void)
{
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
	close(p[0]);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, p[1], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_try_write(&r->s, "x", 1), -EPIPE);
	rec_finish(loop, r);
	pbx_loop_free(loop);
}

static void
/* A pipe raises SIGPIPE unless the caller ignores it (the contract; the
 * runner does): the write then fails with -EPIPE. */
test_stream_pipe_write_reader_gone_epipe(void)
{
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
	close(p[0]);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, p[1], NULL, 64);
	REQUIRE(r != NULL);
	struct pbx_write w = {.buf = "data", .len = 4, .cb = rec_write_cb};
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0);
	r->stop_if = one_write;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.writes, 1);
	CHECK_EQ(r->c.wstatus[0], -EPIPE);
	rec_finish(loop, r);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* Fds that are not sockets                                           */
/* ---------------------------------------------------------------- */

static void
test_stream_pipe_read_end(void)
{
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, p[0], NULL, 5);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK_EQ(write(p[1], "through a pipe", 14), 14);
	r->want = 14;
	r->stop_if = got_want;
	CHECK(run_for(loop, 2000));
	CHECK_GOT(r, "through a pipe");
	close(p[1]);
	r->stop_if = ended;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.eofs, 1);
	CHECK_EQ(r->c.errors, 0);
	CHECK(!pbx_stream_is_reading(&r->s));
	run_for(loop, 50);
	CHECK_EQ(r->c.eofs, 1);
	CHECK_EQ(r->s.bytes_in, 14);
	rec_finish(loop, r);
	pbx_loop_free(loop);
}

static void
test_stream_pipe_write_end(void)
{
	const size_t big = MiB;
	char *want = make_pattern(big + 3);
	REQUIRE(want != NULL);
	memcpy(want + big, "end", 3);
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, p[1], NULL, 64);
	REQUIRE(r != NULL);
	struct pbx_write w = {.buf = want, .len = big, .cb = rec_write_cb};
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0);
	CHECK_EQ(pbx_stream_write_copy(&r->s, "end", 3, rec_write_cb), 0);
	CHECK_EQ(pbx_stream_queued(&r->s), big + 3);
	struct peer pe;
	peer_start(loop, &pe, p[0], want, big + 3, 4096);
	pe.stop_at_len = true;
	CHECK(run_for(loop, 10000));
	CHECK_EQ(pe.n, big + 3);
	CHECK_EQ(pe.bad, SIZE_MAX);
	CHECK_EQ(r->c.writes, 2);
	CHECK_EQ(r->c.wstatus[0], 0);
	CHECK_EQ(r->c.wstatus[1], 0);
	CHECK_EQ(pbx_stream_queued(&r->s), 0);
	CHECK_EQ(r->s.bytes_out, big + 3);
	rec_finish(loop, r);
	CHECK_EQ(recv_to_eof(p[0], NULL, 0, 2000), 0);
	close(p[0]);
	pbx_loop_free(loop);
	free(want);
}

static void
test_stream_regular_file_read_to_eof(void)
{
	const size_t len = 100000;
	char *data = make_pattern(len);
	REQUIRE(data != NULL);
	char path[] = "/tmp/pbx_stream_test.XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);
	REQUIRE(fd >= 0);
	unlink(path);
	CHECK_EQ(write(fd, data, len), (ssize_t)len);
	CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, fd, NULL, 4096);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK(pbx_stream_is_reading(&r->s));
	CHECK_EQ(r->c.reads, 0);
	r->stop_if = ended;
	CHECK(run_for(loop, 5000));
	CHECK_EQ(r->c.ngot, len);
	CHECK(r->c.ngot == len && memcmp(r->got, data, len) == 0);
	CHECK(r->c.reads >= 25); /* 4096 bytes at most each */
	CHECK_EQ(r->c.eofs, 1);
	CHECK_EQ(r->c.errors, 0);
	CHECK_EQ(r->s.bytes_in, len);
	CHECK(!pbx_stream_is_reading(&r->s));
	run_for(loop, 50);
	CHECK_EQ(r->c.eofs, 1);
	rec_finish(loop, r);
	pbx_loop_free(loop);
	free(data);
}

/* ---------------------------------------------------------------- */
/* Giving the fd up                                                   */
/* ---------------------------------------------------------------- */

static void
test_stream_release_fd(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct rec *r = rec_new(loop, sv[0], NULL, 64);
	REQUIRE(r != NULL);
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	struct pbx_write w = {.buf = "x", .len = 1, .cb = rec_write_cb};
	CHECK_EQ(pbx_stream_write(&r->s, &w), 0);
	CHECK_EQ(pbx_stream_release_fd(&r->s), -EBUSY);
	r->stop_if = one_write;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.wstatus[0], 0);
	char buf[8];
	CHECK_EQ(recv_exact(sv[1], buf, 1, 1000), 1);
	CHECK_EQ(buf[0], 'x');

	int fd = pbx_stream_release_fd(&r->s);
	CHECK_EQ(fd, sv[0]);
	CHECK(fd_is_open(sv[0]));
	/* No longer the stream's: arriving bytes are left for the taker. */
	CHECK_EQ(write(sv[1], "pong", 4), 4);
	run_for(loop, 100);
	CHECK_EQ(r->c.reads, 0);
	CHECK_EQ(r->c.closes, 0);
	CHECK_EQ(r->c.eofs + r->c.errors, 0);
	CHECK_EQ(recv_exact(sv[0], buf, 4, 1000), 4);
	CHECK(memcmp(buf, "pong", 4) == 0);
	CHECK_EQ(write(sv[0], "ping", 4), 4);
	CHECK_EQ(recv_exact(sv[1], buf, 4, 1000), 4);
	CHECK(memcmp(buf, "ping", 4) == 0);
	CHECK_EQ(r->c.closes, 0);
	rec_free(r); /* closed without a callback: ours to free */
	close(sv[0]);
	close(sv[1]);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* A transport of our own: bytes held above the fd                    */
/* ---------------------------------------------------------------- */

#define HELD_CHUNK 4

/* Reads what the fd has into its buffer and hands it out 4 bytes at a
 * time, so the fd stays quiet while bytes are held; and, like TLS in the
 * middle of a renegotiation, its first read waits for PBX_WRITABLE. */
struct held {
	char buf[256];
	size_t off, len;  /* held: buf[off..len) */
	bool want_write;  /* reads wait until the fd is writable, once */
	int reads, waits; /* calls, and -EAGAIN for PBX_WRITABLE */
	int writes, shutdowns, closes;
};

static ssize_t
held_read(struct pbx_stream *s, void *buf, size_t len, unsigned *wait)
{
	struct held *h = s->tr_data;
	h->reads++;
	if (h->off == h->len) {
		if (h->want_write && !fd_ready(s->io.fd, POLLOUT)) {
			h->waits++;
			*wait = PBX_WRITABLE;
			return -EAGAIN;
		}
		h->want_write = false;
		ssize_t n = read(s->io.fd, h->buf, sizeof h->buf);
		if (n < 0 && errno == EAGAIN) {
			*wait = PBX_READABLE;
			return -EAGAIN;
		}
		if (n <= 0)
			return n < 0 ? -errno : 0;
		h->off = 0;
		h->len = (size_t)n;
	}
	size_t k = h->len - h->off;
	if (k > HELD_CHUNK)
		k = HELD_CHUNK;
	if (k > len)
		k = len;
	memcpy(buf, h->buf + h->off, k);
	h->off += k;
	return (ssize_t)k;
}

static ssize_t
held_write(struct pbx_stream *s, const void *buf, size_t len, unsigned *wait)
{
	struct held *h = s->tr_data;
	h->writes++;
	ssize_t n = send(s->io.fd, buf, len, MSG_NOSIGNAL);
	if (n >= 0)
		return n;
	if (errno == EAGAIN) {
		*wait = PBX_WRITABLE;
		return -EAGAIN;
	}
	return -errno;
}

static int
held_shutdown(struct pbx_stream *s, unsigned *wait)
{
	(void)wait;
	struct held *h = s->tr_data;
	h->shutdowns++;
	return shutdown(s->io.fd, SHUT_WR) == 0 ? 0 : -errno;
}

static void
held_close(struct pbx_stream *s)
{
	struct held *h = s->tr_data;
	h->closes++;
	close(s->io.fd);
}

static bool
held_has_buffered(const struct pbx_stream *s)
{
	const struct held *h = s->tr_data;
	return h->off < h->len;
}

static const struct pbx_transport held_transport = {
    .name = "held",
    .read = held_read,
    .write = held_write,
    .shutdown = held_shutdown,
    .close = held_close,
    .has_buffered = held_has_buffered,
    .plain = false,
};

static const char HELD_TEXT[] = "0123456789abcdefghij"; /* 20 bytes */

static void
test_stream_custom_transport_held_bytes(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	/* The stream's side cannot write: its first read must wait. */
	REQUIRE(fill(sv[0]) > 0);
	REQUIRE(!fd_ready(sv[0], POLLOUT));
	CHECK_EQ(write(sv[1], HELD_TEXT, 20), 20);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct held h = {.want_write = true};
	struct rec *r = rec_new(loop, sv[0], &held_transport, 64);
	REQUIRE(r != NULL);
	r->s.tr_data = &h;
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	r->want = 20;
	r->stop_if = got_want;
	run_for(loop, 100);
	/* Asked once, then left alone until the fd is writable: the
	 * stream must not spin on the readable fd meanwhile. */
	CHECK(h.waits >= 1);
	CHECK(h.reads <= 3);
	CHECK_EQ(r->c.ngot, 0);
	CHECK_EQ(r->c.eofs + r->c.errors, 0);

	/* Writable again: the read is retried, takes all 20 bytes off the
	 * fd at once, and the stream hands out what the transport holds
	 * with no fd event to say so. */
	char sink[65536];
	while (read(sv[1], sink, sizeof sink) > 0)
		;
	CHECK(run_for(loop, 2000));
	CHECK(!h.want_write);
	CHECK_GOT(r, HELD_TEXT);
	CHECK_EQ(r->c.reads, 20 / HELD_CHUNK);
	CHECK_EQ(r->s.bytes_in, 20);
	CHECK(!fd_ready(sv[0], POLLIN)); /* the fd had nothing to say */
	CHECK(pbx_stream_is_reading(&r->s));

	/* Not plain: the fd cannot be given away. */
	CHECK_EQ(pbx_stream_release_fd(&r->s), -EBUSY);
	rec_finish(loop, r);
	CHECK_EQ(h.closes, 1);
	CHECK(!fd_is_open(sv[0]));
	close(sv[1]);
	pbx_loop_free(loop);
}

/* Reading paused (as a relay above its high-water mark does) while the
 * transport holds bytes, then resumed: the held bytes still come. */
static void
test_stream_custom_transport_held_bytes_after_pause(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	CHECK_EQ(write(sv[1], HELD_TEXT, 20), 20);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct held h = {0};
	struct rec *r = rec_new(loop, sv[0], &held_transport, 64);
	REQUIRE(r != NULL);
	r->s.tr_data = &h;
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	r->want = 4;
	r->stop_if = got_want;
	CHECK(run_for(loop, 2000));
	CHECK_GOT(r, "0123");
	CHECK(!fd_ready(sv[0], POLLIN)); /* the rest is held */

	pbx_stream_read_stop(&r->s);
	run_for(loop, 50);
	CHECK_GOT(r, "0123");
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	r->want = 20;
	CHECK(run_for(loop, 1000));
	CHECK_GOT(r, HELD_TEXT);
	rec_finish(loop, r);
	close(sv[1]);
	pbx_loop_free(loop);
}

/* Bytes a look-ahead (try_read) left in the transport are delivered
 * once reading starts. */
static void
test_stream_custom_transport_held_after_try_read(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	CHECK_EQ(write(sv[1], HELD_TEXT, 20), 20);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct held h = {0};
	struct rec *r = rec_new(loop, sv[0], &held_transport, 64);
	REQUIRE(r != NULL);
	r->s.tr_data = &h;
	char buf[8];
	CHECK_EQ(pbx_stream_try_read(&r->s, buf, sizeof buf), 4);
	CHECK(memcmp(buf, "0123", 4) == 0);
	CHECK(!fd_ready(sv[0], POLLIN));
	CHECK_EQ(pbx_stream_read_start(&r->s), 0);
	CHECK_EQ(r->c.reads, 0);
	r->want = 16;
	r->stop_if = got_want;
	CHECK(run_for(loop, 1000));
	CHECK_GOT(r, "456789abcdefghij");
	CHECK_EQ(r->s.bytes_in, 20);
	rec_finish(loop, r);
	close(sv[1]);
	pbx_loop_free(loop);
}

static void
test_stream_custom_transport_write_and_shutdown(void)
{
	int sv[2];
	REQUIRE(unix_pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct held h = {0};
	struct rec *r = rec_new(loop, sv[0], &held_transport, 64);
	REQUIRE(r != NULL);
	r->s.tr_data = &h;
	CHECK_EQ(pbx_stream_write_copy(&r->s, "via the table", 13, NULL), 0);
	CHECK_EQ(pbx_stream_shutdown(&r->s), 0);
	CHECK(pbx_stream_try_write(&r->s, "x", 1) < 0); /* queued first */
	r->stop_if = shut_down;
	CHECK(run_for(loop, 2000));
	CHECK_EQ(r->c.shut_status, 0);
	CHECK(h.writes >= 1);
	CHECK_EQ(h.shutdowns, 1);
	char buf[32];
	CHECK_EQ(recv_to_eof(sv[1], buf, sizeof buf, 2000), 13);
	CHECK(memcmp(buf, "via the table", 13) == 0);
	CHECK_EQ(r->s.bytes_out, 13);
	rec_finish(loop, r);
	CHECK_EQ(h.closes, 1);
	CHECK(!fd_is_open(sv[0]));
	close(sv[1]);
	pbx_loop_free(loop);
}

CHECK_MAIN(TEST(test_stream_read_delivers_through_alloc),
    TEST(test_stream_read_eof_once), TEST(test_stream_read_error_on_reset),
    TEST(test_stream_read_stop_and_restart),
    TEST(test_stream_callbacks_not_inside_calls),
    TEST(test_stream_close_completes_from_loop),
    TEST(test_stream_try_read_try_write),
    TEST(test_stream_try_write_waits_behind_queue),
    TEST(test_stream_writes_in_order),
    TEST(test_stream_large_write_backpressure),
    TEST(test_stream_shutdown_after_queue),
    TEST(test_stream_close_cancels_and_frees),
    TEST(test_stream_close_in_read_callback),
    TEST(test_stream_close_in_write_callback),
    TEST(test_stream_write_to_gone_peer_no_sigpipe),
    TEST(test_stream_write_to_gone_tcp_peer_no_sigpipe),
    TEST(test_stream_pipe_try_write_reader_gone_epipe),
    TEST(test_stream_pipe_write_reader_gone_epipe),
    TEST(test_stream_pipe_read_end), TEST(test_stream_pipe_write_end),
    TEST(test_stream_regular_file_read_to_eof), TEST(test_stream_release_fd),
    TEST(test_stream_custom_transport_held_bytes),
    TEST(test_stream_custom_transport_held_bytes_after_pause),
    TEST(test_stream_custom_transport_held_after_try_read),
    TEST(test_stream_custom_transport_write_and_shutdown))
