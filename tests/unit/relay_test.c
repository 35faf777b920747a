/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the relay object (struct pbx_relay, driven by the loop)
 * between streams over socketpairs, loopback TCP, pipes and files, and of
 * the blocking pbx_relay with a regular file as its local input. The test
 * holds the far ends and pumps them from a 1 ms timer on the relay's loop.
 */
#include "check.h"
#include "pbx.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#define CHUNK 65536
#define MIB (1u << 20)

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

/* check.h ignores SIGPIPE; these tests want to see one if it comes. */
static void
default_sigpipe(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
}

/* Random bytes (xorshift64*), the same for the same seed. */
static uint8_t *
make_random(size_t len, uint64_t seed)
{
	uint8_t *p = malloc(len ? len : 1);
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
	if (p == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 8) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		uint64_t v = s * 0x2545F4914F6CDD1Dull;
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
	return p;
}

static size_t
first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return i;
	return n;
}

static void
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static bool
is_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

static int
unix_pair(int fds[2])
{
	return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
}

/* A connected loopback TCP pair (blocking), the listener on port 0. */
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
		goto out_close;
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0)
		goto out_close;
	if (connect(fds[0], (struct sockaddr *)&a, sizeof a) != 0)
		goto out_close_client;
	fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fds[1] < 0)
		goto out_close_client;
	close(l);
	return 0;
out_close_client:
	close(fds[0]);
out_close:
	close(l);
	return -1;
}

/* Close with a reset (RST) instead of a FIN. */
static void
close_reset(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
		CHECK_FAILED("SO_LINGER: %s", strerror(errno));
	close(fd);
}

/* An unlinked temporary file holding len bytes of data, offset 0. */
static int
temp_file(const uint8_t *data, size_t len)
{
	char path[] = "/tmp/pbx_relay_test.XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -1;
	unlink(path);
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, data + off, len - off);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* ---------------------------------------------------------------- */
/* Peers: the test's ends, pumped without blocking                    */
/* ---------------------------------------------------------------- */

enum { PEER_KEEP, PEER_SHUT, PEER_CLOSE };

struct peer {
	int fd; /* the test's end of a socket or pipe; -1 once closed */
	/* Sending: out[0..out_len), then the end action. */
	const uint8_t *out; /* borrowed */
	size_t out_len, out_off;
	int end; /* PEER_* */
	bool end_done;
	bool blocked;         /* the last send found the fd full */
	int64_t last_send_ms; /* when a send last took bytes */
	/* Receiving, when reads and not paused. */
	bool reads, paused;
	uint8_t *in; /* owned */
	size_t in_cap, in_len, extra;
	bool eof;
	int err; /* -errno of a failed send or read */
};

static void
peer_send(struct peer *p, const void *data, size_t len, int end)
{
	p->out = data;
	p->out_len = len;
	p->out_off = 0;
	p->end = end;
	p->end_done = false;
}

static void
peer_expect(struct peer *p, size_t cap)
{
	p->reads = true;
	p->in = malloc(cap + 1);
	p->in_cap = p->in != NULL ? cap : 0;
}

static void
peer_pump_out(struct peer *p)
{
	while (p->fd >= 0 && p->out_off < p->out_len && p->err == 0) {
		size_t n = p->out_len - p->out_off;
		const uint8_t *b = p->out + p->out_off;
		n = n > CHUNK ? CHUNK : n;
		ssize_t w = send(p->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == ENOTSOCK)
			w = write(p->fd, b, n);
		if (w > 0) {
			p->out_off += (size_t)w;
			p->blocked = false;
			p->last_send_ms = now_ms();
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w == 0 || errno == EAGAIN) {
			p->blocked = true;
			return;
		} else {
			p->err = -errno;
			return;
		}
	}
	if (p->fd < 0 || p->out_off < p->out_len || p->end_done)
		return;
	p->end_done = true;
	if (p->end == PEER_SHUT && shutdown(p->fd, SHUT_WR) != 0)
		p->err = -errno;
	if (p->end == PEER_CLOSE) {
		close(p->fd);
		p->fd = -1;
	}
}

static void
peer_pump_in(struct peer *p)
{
	uint8_t scratch[4096];

	while (p->fd >= 0 && p->reads && !p->paused && !p->eof && !p->err) {
		bool room = p->in_len < p->in_cap;
		uint8_t *dst = room ? p->in + p->in_len : scratch;
		size_t len = room ? p->in_cap - p->in_len : sizeof scratch;
		ssize_t n = read(p->fd, dst, len);
		if (n > 0 && room)
			p->in_len += (size_t)n;
		else if (n > 0)
			p->extra += (size_t)n; /* more than the test expects */
		else if (n == 0)
			p->eof = true;
		else if (errno == EAGAIN)
			return;
		else if (errno != EINTR)
			p->err = -errno;
	}
}

/* The peer got exactly want[0..len) and then the end of the stream. */
static void
check_received(
    const char *what, const struct peer *p, const void *want, size_t len)
{
	if (p->in_len != len || p->extra != 0)
		CHECK_FAILED("%s: received %zu bytes (+%zu beyond), want %zu",
		    what, p->in_len, p->extra, len);
	size_t n = p->in_len < len ? p->in_len : len;
	size_t d = first_diff(p->in, want, n);
	if (d != n)
		CHECK_FAILED("%s: first wrong byte at offset %zu", what, d);
	if (!p->eof)
		CHECK_FAILED("%s: no end of stream", what);
	if (p->err != 0)
		CHECK_FAILED("%s: %s", what, strerror(-p->err));
}

/* ---------------------------------------------------------------- */
/* The relay under test, its streams and the caller's callbacks       */
/* ---------------------------------------------------------------- */

struct rt;
struct owner {
	struct rt *t;
	int idx;
};

struct rt {
	struct pbx_loop *loop;
	struct pbx_timer tick;
	bool (*until)(struct rt *t);
	bool met;
	int64_t deadline;
	struct peer peer[4];
	int npeers;
	struct peer *watch; /* the peer some conditions look at */
	size_t want;
	struct pbx_stream st[4];
	struct owner own[4]; /* st[i].data, the caller's */
	bool closed[4];      /* pbx_stream_close was called */
	int nst;
	int closes, shutdowns, reads; /* the caller's callbacks */
	char caller_in[256];
	size_t caller_len;
	struct pbx_relay r;
	struct pbx_relay *rp; /* the relay in use: &r unless the test's */
	bool in_start;        /* inside pbx_relay_start */
	bool close_in_cb;     /* the relay's cb closes every stream */
	void (*on_cb)(struct rt *t);
	/* What the relay's cb saw. */
	int cb_calls;
	bool cb_in_start;
	int cb_err, cb_where;
	uint64_t cb_ab, cb_ba;
};

static struct rt *
owner_of(struct pbx_stream *s)
{
	return ((struct owner *)s->data)->t;
}

static void
caller_alloc(struct pbx_stream *s, char **buf, size_t *len)
{
	struct rt *t = owner_of(s);
	*buf = t->caller_in + t->caller_len;
	*len = sizeof t->caller_in - t->caller_len;
}

static void
caller_read(struct pbx_stream *s, ssize_t n, char *buf)
{
	struct rt *t = owner_of(s);
	(void)buf;
	t->reads++;
	if (n > 0)
		t->caller_len += (size_t)n;
}

static void
caller_shutdown(struct pbx_stream *s, int status)
{
	(void)status;
	owner_of(s)->shutdowns++;
}

static void
caller_close(struct pbx_stream *s, int status)
{
	(void)status;
	owner_of(s)->closes++;
}

static const struct pbx_stream_ops caller_ops = {
    .alloc = caller_alloc,
    .read = caller_read,
    .shutdown = caller_shutdown,
    .close = caller_close,
};

/*
 * Each test runs three times: as the relay chooses (the default: splice
 * into pipes), copying (PBX_RELAY_COPY) and splicing wherever it can
 * (PBX_RELAY_SPLICE), set in the test's own process.
 */
static int relay_mode;

/* Bytes in flight toward B: queued on b_out, or in the splice pipe. */
static size_t
toward_b(const struct pbx_relay *r)
{
	const struct pbx_relay_dir *x = &r->dir[0];
	return x->splicing ? x->in_pipe : pbx_stream_queued(r->b_out);
}

static size_t
toward_a(const struct pbx_relay *r)
{
	const struct pbx_relay_dir *x = &r->dir[1];
	return x->splicing ? x->in_pipe : pbx_stream_queued(r->a_out);
}

/* The relay reads A's input (or, splicing, waits for it to be readable). */
static bool
reads_a(const struct pbx_relay *r)
{
	const struct pbx_relay_dir *x = &r->dir[0];
	return x->splicing ? x->wait == PBX_READABLE
			   : pbx_stream_is_reading(r->a_in);
}

static void
rt_close(struct rt *t)
{
	for (int i = 0; i < t->nst; i++)
		if (!t->closed[i]) {
			t->closed[i] = true;
			pbx_stream_close(&t->st[i]);
		}
}

/* The streams are the caller's again, open, idle, with nothing queued. */
static void
check_given_back(struct rt *t, struct pbx_relay *r)
{
	for (int i = 0; i < t->nst; i++) {
		struct pbx_stream *s = &t->st[i];
		if (s->ops != &caller_ops || s->data != &t->own[i])
			CHECK_FAILED("in cb: stream %d lacks the caller's "
				     "ops and data",
			    i);
		if (!t->closed[i] && !is_open(s->io.fd))
			CHECK_FAILED("in cb: stream %d is not open", i);
		if (pbx_stream_is_reading(s))
			CHECK_FAILED("in cb: stream %d is still reading", i);
	}
	if (r->err == 0 && toward_a(r) != 0)
		CHECK_FAILED(
		    "in cb: %zu bytes still in flight toward A", toward_a(r));
	if (r->err == 0 && toward_b(r) != 0)
		CHECK_FAILED(
		    "in cb: %zu bytes still in flight toward B", toward_b(r));
	for (int d = 0; d < 2; d++)
		if (r->dir[d].splicing)
			CHECK_FAILED("in cb: direction %d still splices", d);
}

static void
relay_done(struct pbx_relay *r)
{
	struct rt *t = r->data;

	t->cb_calls++;
	t->cb_in_start |= t->in_start;
	t->cb_err = r->err;
	t->cb_where = r->where;
	t->cb_ab = r->a_to_b;
	t->cb_ba = r->b_to_a;
	check_given_back(t, r);
	if (t->on_cb != NULL)
		t->on_cb(t); /* may free r */
	if (t->close_in_cb)
		rt_close(t);
}

static int
rt_init(struct rt *t)
{
	memset(t, 0, sizeof *t);
	default_sigpipe();
	t->rp = &t->r;
	t->r.cb = relay_done;
	t->r.data = t;
	return pbx_loop_new(&t->loop);
}

/* A stream over fd (made non-blocking) with the caller's ops and data. */
static struct pbx_stream *
rt_stream(struct rt *t, int fd)
{
	int i = t->nst++;
	set_nonblock(fd);
	pbx_stream_init(&t->st[i], t->loop, fd, NULL, &caller_ops);
	t->own[i] = (struct owner){.t = t, .idx = i};
	t->st[i].data = &t->own[i];
	return &t->st[i];
}

static struct peer *
rt_peer(struct rt *t, int fd)
{
	struct peer *p = &t->peer[t->npeers++];
	set_nonblock(fd);
	p->fd = fd;
	return p;
}

static int
rt_start(struct rt *t)
{
	t->in_start = true;
	t->rp->flags |= relay_mode;
	int rc = pbx_relay_start(t->rp);
	t->in_start = false;
	return rc;
}

static void
tick_cb(struct pbx_loop *loop, struct pbx_timer *tm)
{
	struct rt *t = tm->data;

	for (int i = 0; i < t->npeers; i++) {
		peer_pump_out(&t->peer[i]);
		peer_pump_in(&t->peer[i]);
	}
	if (t->until(t)) {
		t->met = true;
		pbx_loop_stop(loop);
	} else if (now_ms() >= t->deadline) {
		pbx_loop_stop(loop);
	} else if (pbx_timer_start(loop, tm, 1) != 0) {
		CHECK_FAILED("tick timer did not restart");
		pbx_loop_stop(loop);
	}
}

/* Run the loop, pumping the peers, until until(t) or timeout_ms. */
static bool
run_until(struct rt *t, bool (*until)(struct rt *t), int timeout_ms)
{
	t->until = until;
	t->met = false;
	t->deadline = now_ms() + timeout_ms;
	t->tick.cb = tick_cb;
	t->tick.data = t;
	if (pbx_timer_start(t->loop, &t->tick, 0) != 0)
		return false;
	int r = pbx_loop_run(t->loop);
	pbx_timer_stop(t->loop, &t->tick);
	if (r != 0)
		CHECK_FAILED("pbx_loop_run: %s", pbx_strerror(r));
	return t->met;
}

static bool
never(struct rt *t)
{
	(void)t;
	return false;
}

static bool
cb_called(struct rt *t)
{
	return t->cb_calls > 0;
}

static bool
readers_done(struct rt *t)
{
	for (int i = 0; i < t->npeers; i++) {
		const struct peer *p = &t->peer[i];
		if (p->reads && p->fd >= 0 && !p->eof && p->err == 0)
			return false;
	}
	return true;
}

static bool
cb_and_readers_done(struct rt *t)
{
	return cb_called(t) && readers_done(t);
}

static bool
watch_has_want(struct rt *t)
{
	return t->watch->in_len >= t->want;
}

static bool
watch_eof(struct rt *t)
{
	return t->watch->eof || t->watch->err != 0;
}

/* The watched peer cannot send and has not sent for 200 ms. */
static bool
watch_stuck(struct rt *t)
{
	const struct peer *p = t->watch;
	return p->blocked && p->out_off > 0 &&
	       now_ms() - p->last_send_ms >= 200;
}

static bool
all_closed(struct rt *t)
{
	return t->closes >= t->nst;
}

/* Close what is still open, let the closes complete, free everything. */
static void
rt_fini(struct rt *t)
{
	rt_close(t);
	if (!run_until(t, all_closed, 5000))
		CHECK_FAILED(
		    "%d of %d close callbacks came", t->closes, t->nst);
	if (t->cb_calls > 1)
		CHECK_FAILED("the relay's cb ran %d times", t->cb_calls);
	if (t->cb_in_start)
		CHECK_FAILED("the relay's cb ran inside pbx_relay_start");
	for (int i = 0; i < t->npeers; i++) {
		if (t->peer[i].fd >= 0)
			close(t->peer[i].fd);
		free(t->peer[i].in);
	}
	pbx_loop_free(t->loop);
}

/* ---------------------------------------------------------------- */
/* Bytes both ways                                                    */
/* ---------------------------------------------------------------- */

static void
check_both_ways(int (*mkpair)(int fds[2]))
{
	const size_t na = 4 * MIB + 4099, nb = 3 * MIB + 77;
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(mkpair(a) == 0);
	REQUIRE(mkpair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	struct peer *pa = rt_peer(&t, a[1]), *pb = rt_peer(&t, b[1]);
	uint8_t *da = make_random(na, 1), *db = make_random(nb, 2);
	REQUIRE(da != NULL && db != NULL);
	peer_send(pa, da, na, PEER_SHUT);
	peer_expect(pa, nb);
	peer_send(pb, db, nb, PEER_SHUT);
	peer_expect(pb, na);
	t.close_in_cb = true;
	CHECK_EQ(rt_start(&t), 0);
	CHECK(run_until(&t, cb_and_readers_done, 15000));
	CHECK_EQ(t.cb_calls, 1);
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, na);
	CHECK_EQ(t.cb_ba, nb);
	check_received("A to B", pb, da, na);
	check_received("B to A", pa, db, nb);
	rt_fini(&t);
	free(da);
	free(db);
}

static void
test_relay_both_ways_socketpair(void)
{
	check_both_ways(unix_pair);
}

static void
test_relay_both_ways_tcp(void)
{
	check_both_ways(tcp_pair);
}

/* ---------------------------------------------------------------- */
/* Half-close                                                         */
/* ---------------------------------------------------------------- */

static void
test_relay_half_close_carried(void)
{
	static const char up[] = "from A", down[] = "from B, after A's end";
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	struct peer *pa = rt_peer(&t, a[1]), *pb = rt_peer(&t, b[1]);
	peer_send(pa, up, 6, PEER_SHUT);
	peer_expect(pa, 64);
	peer_expect(pb, 64);
	CHECK_EQ(rt_start(&t), 0);

	/* A's end reaches B's peer after A's bytes. */
	t.watch = pb;
	CHECK(run_until(&t, watch_eof, 5000));
	check_received("A to B", pb, up, 6);
	CHECK_EQ(t.cb_calls, 0);

	/* B to A still flows. */
	peer_send(pb, down, sizeof down - 1, PEER_KEEP);
	t.watch = pa;
	t.want = sizeof down - 1;
	CHECK(run_until(&t, watch_has_want, 5000));
	CHECK_EQ(t.cb_calls, 0);

	/* B's end too: both directions have ended. */
	peer_send(pb, NULL, 0, PEER_SHUT);
	CHECK(run_until(&t, cb_called, 5000));
	CHECK_EQ(t.cb_calls, 1);
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, 6);
	CHECK_EQ(t.cb_ba, sizeof down - 1);
	CHECK(is_open(a[0]) && is_open(b[0]));
	CHECK_EQ(t.reads, 0); /* the caller's read cb never ran */

	/* The test closes the streams; A's peer has every byte and the end. */
	rt_close(&t);
	CHECK(run_until(&t, watch_eof, 5000));
	check_received("B to A", pa, down, sizeof down - 1);
	rt_fini(&t);
}

/* When cb runs, the ends that were carried have reached the peers. */
static void
check_peers_saw_end(struct rt *t)
{
	for (int i = 0; i < t->npeers; i++) {
		char c;
		ssize_t n = recv(t->peer[i].fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
		if (n != 0)
			CHECK_FAILED("in cb: peer %d has not seen the end "
				     "(recv: %zd, %s)",
			    i, n, n < 0 ? strerror(errno) : "data");
	}
}

static void
test_relay_fin_sent_before_cb(void)
{
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	struct peer *pa = rt_peer(&t, a[1]), *pb = rt_peer(&t, b[1]);
	peer_send(pa, NULL, 0, PEER_SHUT);
	peer_send(pb, NULL, 0, PEER_SHUT);
	t.on_cb = check_peers_saw_end;
	CHECK_EQ(rt_start(&t), 0);
	CHECK(run_until(&t, cb_called, 5000));
	CHECK_EQ(t.cb_err, 0);
	rt_fini(&t);
}

/* ---------------------------------------------------------------- */
/* PBX_RELAY_END_WITH_B                                               */
/* ---------------------------------------------------------------- */

static bool
caller_and_watch_have(struct rt *t)
{
	return t->caller_len >= 4 && watch_has_want(t);
}

static void
test_relay_end_with_b(void)
{
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	struct pbx_stream *sa = rt_stream(&t, a[0]), *sb = rt_stream(&t, b[0]);
	t.r.a_in = t.r.a_out = sa;
	t.r.b_in = t.r.b_out = sb;
	t.r.flags = PBX_RELAY_END_WITH_B;
	struct peer *pa = rt_peer(&t, a[1]), *pb = rt_peer(&t, b[1]);
	peer_send(pa, "early", 5, PEER_KEEP); /* A's input stays open */
	peer_expect(pa, 64);
	peer_expect(pb, 64);
	CHECK_EQ(rt_start(&t), 0);
	t.watch = pb;
	t.want = 5;
	CHECK(run_until(&t, watch_has_want, 5000));
	CHECK_EQ(t.cb_calls, 0);

	peer_send(pb, "reply", 5, PEER_SHUT);
	CHECK(run_until(&t, cb_called, 5000));
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, 5);
	CHECK_EQ(t.cb_ba, 5);
	t.watch = pa;
	CHECK(run_until(&t, watch_has_want, 5000));
	CHECK(pa->in_len == 5 && memcmp(pa->in, "reply", 5) == 0);

	/* The streams are the caller's: B takes a write, A's rest is read
	 * by the caller's own callbacks, and none of it crosses over. */
	CHECK_EQ(pbx_stream_write_copy(sb, "bye", 3, NULL), 0);
	peer_send(pa, "more", 4, PEER_KEEP);
	CHECK_EQ(pbx_stream_read_start(sa), 0);
	t.watch = pb;
	t.want = 8;
	CHECK(run_until(&t, caller_and_watch_have, 5000));
	CHECK(t.caller_len == 4 && memcmp(t.caller_in, "more", 4) == 0);
	CHECK(pb->in_len == 8 && memcmp(pb->in, "earlybye", 8) == 0);
	CHECK_EQ(pa->in_len, 5);
	rt_fini(&t);
}

/* B ends while A's bytes are still queued toward B: they all arrive. */
static void
test_relay_end_with_b_delivers_a(void)
{
	const size_t na = 4 * MIB;
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	t.r.flags = PBX_RELAY_END_WITH_B;
	struct peer *pa = rt_peer(&t, a[1]), *pb = rt_peer(&t, b[1]);
	uint8_t *da = make_random(na, 3);
	REQUIRE(da != NULL);
	peer_send(pa, da, na, PEER_KEEP);
	peer_expect(pa, 64);
	peer_expect(pb, na);
	pb->paused = true;
	CHECK_EQ(rt_start(&t), 0);
	t.watch = pa;
	CHECK(run_until(&t, watch_stuck, 5000));
	CHECK(toward_b(&t.r) > 0);

	/* B's input ends, but what was read is not all written yet. */
	peer_send(pb, NULL, 0, PEER_SHUT);
	run_until(&t, never, 200);
	CHECK_EQ(t.cb_calls, 0);

	pb->paused = false;
	t.close_in_cb = true;
	CHECK(run_until(&t, cb_and_readers_done, 10000));
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ba, 0);
	CHECK(t.cb_ab > 0);
	CHECK(t.cb_ab < na); /* A still had bytes: the relay did not wait */
	check_received("A to B", pb, da, (size_t)t.cb_ab);
	rt_fini(&t);
	free(da);
}

/* ---------------------------------------------------------------- */
/* Backpressure                                                       */
/* ---------------------------------------------------------------- */

static void
test_relay_backpressure(void)
{
	const size_t na = 8 * MIB;
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	struct peer *pa = rt_peer(&t, a[1]), *pb = rt_peer(&t, b[1]);
	uint8_t *da = make_random(na, 4);
	REQUIRE(da != NULL);
	peer_send(pa, da, na, PEER_SHUT);
	peer_expect(pa, 64);
	peer_send(pb, NULL, 0, PEER_SHUT);
	peer_expect(pb, na);
	pb->paused = true; /* B's peer does not read */
	CHECK_EQ(rt_start(&t), 0);
	t.watch = pa;
	CHECK(run_until(&t, watch_stuck, 5000));

	/* The relay stopped reading A: A's socket is full, little queued. */
	size_t sent = pa->out_off, queued = toward_b(&t.r);
	CHECK(pa->blocked);
	CHECK(sent < na);
	CHECK(queued > 0);
	if (queued > 64 * 1024)
		CHECK_FAILED("%zu bytes queued toward B", queued);
	CHECK(!reads_a(&t.r));
	run_until(&t, never, 200);
	CHECK_EQ(pa->out_off, sent);
	CHECK_EQ(toward_b(&t.r), queued);

	/* B's peer reads: everything arrives. */
	pb->paused = false;
	t.close_in_cb = true;
	CHECK(run_until(&t, cb_and_readers_done, 15000));
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, na);
	CHECK_EQ(t.cb_ba, 0);
	check_received("A to B", pb, da, na);
	rt_fini(&t);
	free(da);
}

/* ---------------------------------------------------------------- */
/* Errors                                                             */
/* ---------------------------------------------------------------- */

static void
check_reset_error(const struct rt *t, int where)
{
	CHECK_EQ(t->cb_calls, 1);
	CHECK(t->cb_err < 0);
	if (t->cb_err != -ECONNRESET && t->cb_err != -EPIPE)
		CHECK_FAILED("err %d (%s), want ECONNRESET or EPIPE", t->cb_err,
		    pbx_strerror(t->cb_err));
	CHECK_EQ(t->cb_where, where);
}

/* B's peer resets while the relay is writing to it: an error on side B,
 * and no SIGPIPE (at its default action, it would end this test). */
static void
test_relay_b_reset_while_writing(void)
{
	const size_t na = 16 * MIB;
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(tcp_pair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	struct peer *pa = rt_peer(&t, a[1]), *pb = rt_peer(&t, b[1]);
	uint8_t *da = make_random(na, 5);
	REQUIRE(da != NULL);
	peer_send(pa, da, na, PEER_KEEP);
	CHECK_EQ(rt_start(&t), 0);
	t.watch = pa;
	CHECK(run_until(&t, watch_stuck, 5000));
	CHECK(toward_b(&t.r) > 0);
	close_reset(pb->fd);
	pb->fd = -1;
	t.close_in_cb = true;
	CHECK(run_until(&t, cb_called, 5000));
	check_reset_error(&t, 1);
	rt_fini(&t);
	free(da);
}

static void
test_relay_b_reset_idle(void)
{
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(tcp_pair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	rt_peer(&t, a[1]);
	struct peer *pb = rt_peer(&t, b[1]);
	CHECK_EQ(rt_start(&t), 0);
	close_reset(pb->fd);
	pb->fd = -1;
	CHECK(run_until(&t, cb_called, 5000));
	check_reset_error(&t, 1);
	rt_fini(&t);
}

static void
test_relay_a_reset_idle(void)
{
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(tcp_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	struct peer *pa = rt_peer(&t, a[1]);
	rt_peer(&t, b[1]);
	CHECK_EQ(rt_start(&t), 0);
	close_reset(pa->fd);
	pa->fd = -1;
	CHECK(run_until(&t, cb_called, 5000));
	check_reset_error(&t, 0);
	rt_fini(&t);
}

static void
close_streams(struct rt *t)
{
	rt_close(t);
}

/*
 * An error while bytes are queued toward the other side. The caller
 * closes the streams in cb and frees the relay once their close
 * callbacks have run (the contract: a write of the relay's may still be
 * queued until then); ASan watches.
 * Side B is a pair: b_in a TCP socket (reset), b_out a socketpair whose
 * peer does not read.
 */
static void
test_relay_error_free_after_close(void)
{
	const size_t na = 4 * MIB;
	struct rt t;
	int a[2], bi[2], bo[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(tcp_pair(bi) == 0);
	REQUIRE(unix_pair(bo) == 0);
	struct pbx_relay *r = calloc(1, sizeof *r);
	REQUIRE(r != NULL);
	*r = (struct pbx_relay){.cb = relay_done, .data = &t};
	t.rp = r;
	r->a_in = r->a_out = rt_stream(&t, a[0]);
	r->b_in = rt_stream(&t, bi[0]);
	r->b_out = rt_stream(&t, bo[0]);
	struct peer *pa = rt_peer(&t, a[1]), *pbi = rt_peer(&t, bi[1]);
	rt_peer(&t, bo[1]); /* does not read */
	uint8_t *da = make_random(na, 6);
	REQUIRE(da != NULL);
	peer_send(pa, da, na, PEER_KEEP);
	CHECK_EQ(rt_start(&t), 0);
	t.watch = pa;
	CHECK(run_until(&t, watch_stuck, 5000));
	CHECK(toward_b(r) > 0);
	close_reset(pbi->fd);
	pbi->fd = -1;
	t.on_cb = close_streams;
	CHECK(run_until(&t, cb_called, 5000));
	check_reset_error(&t, 1);
	rt_fini(&t); /* runs the loop: the close callbacks */
	free(r);
	t.rp = NULL;
	free(da);
}

/* ---------------------------------------------------------------- */
/* A local pair as side A                                             */
/* ---------------------------------------------------------------- */

static bool
local_pair_phase1(struct rt *t)
{
	return watch_eof(t) && t->peer[1].in_len >= t->want;
}

static void
test_relay_local_pair_a(void)
{
	const size_t na = 2 * MIB + 5, nb = 2 * MIB + 999;
	struct rt t;
	int in[2], out[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(pipe2(in, O_CLOEXEC) == 0);
	REQUIRE(pipe2(out, O_CLOEXEC) == 0);
	REQUIRE(tcp_pair(b) == 0);
	t.r.a_in = rt_stream(&t, in[0]);
	t.r.a_out = rt_stream(&t, out[1]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	uint8_t *da = make_random(na, 7), *db = make_random(nb, 8);
	REQUIRE(da != NULL && db != NULL);
	struct peer *pw = rt_peer(&t, in[1]), *pr = rt_peer(&t, out[0]);
	struct peer *pb = rt_peer(&t, b[1]);
	peer_send(pw, da, na, PEER_CLOSE);
	peer_expect(pr, nb);
	peer_send(pb, db, nb, PEER_KEEP);
	peer_expect(pb, na);
	CHECK_EQ(rt_start(&t), 0);

	/* The pipe's end becomes a FIN; B's input is still open. */
	t.watch = pb;
	t.want = nb;
	CHECK(run_until(&t, local_pair_phase1, 15000));
	check_received("A to B", pb, da, na);
	CHECK_EQ(t.cb_calls, 0);

	peer_send(pb, NULL, 0, PEER_SHUT);
	t.close_in_cb = true; /* a pipe has no half-close: the close ends it */
	CHECK(run_until(&t, cb_and_readers_done, 5000));
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, na);
	CHECK_EQ(t.cb_ba, nb);
	check_received("B to A", pr, db, nb);
	rt_fini(&t);
	free(da);
	free(db);
}

/* A's output is a pipe whose reader has gone: an error on side A. A pipe
 * raises SIGPIPE unless the caller ignores it (the contract), as pbx does:
 * ignored here, the relay must end with -EPIPE on side A. */
static void
test_relay_local_output_gone_no_sigpipe(void)
{
	struct rt t;
	int in[2], out[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	struct sigaction ign = {.sa_handler = SIG_IGN};
	sigaction(SIGPIPE, &ign, NULL);
	REQUIRE(pipe2(in, O_CLOEXEC) == 0);
	REQUIRE(pipe2(out, O_CLOEXEC) == 0);
	REQUIRE(unix_pair(b) == 0);
	close(out[0]);
	t.r.a_in = rt_stream(&t, in[0]);
	t.r.a_out = rt_stream(&t, out[1]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	rt_peer(&t, in[1]);
	struct peer *pb = rt_peer(&t, b[1]);
	peer_send(pb, "data", 4, PEER_KEEP);
	CHECK_EQ(rt_start(&t), 0);
	CHECK(run_until(&t, cb_called, 5000));
	CHECK_EQ(t.cb_err, -EPIPE);
	CHECK_EQ(t.cb_where, 0);
	rt_fini(&t);
}

/* ---------------------------------------------------------------- */
/* Where the relay splices, and what the streams count                */
/* ---------------------------------------------------------------- */

/*
 * Sockets and pipes splice (unless PBX_RELAY_COPY); a regular file, or
 * an output with the owner's bytes queued, copies. Either way every byte
 * arrives in order and the streams' counters agree with the relay's.
 */
static void
test_relay_splices_where_it_can(void)
{
	static const char first[] = "queued by the owner first|";
	const size_t nb = MIB + 3, nf = 300000;
	struct rt t;
	int in[2], b[2], c[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(pipe2(in, O_CLOEXEC) == 0);
	REQUIRE(tcp_pair(b) == 0);
	uint8_t *db = make_random(nb, 11), *df = make_random(nf, 12);
	REQUIRE(db != NULL && df != NULL);
	int file = temp_file(df, nf);
	REQUIRE(file >= 0);

	/* A: a pipe in, a socketpair out with bytes queued; B: TCP. */
	REQUIRE(unix_pair(c) == 0);
	t.r.a_in = rt_stream(&t, in[0]);
	t.r.a_out = rt_stream(&t, c[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	CHECK_EQ(
	    pbx_stream_write_copy(t.r.a_out, first, strlen(first), NULL), 0);
	struct peer *pw = rt_peer(&t, in[1]), *pc = rt_peer(&t, c[1]);
	struct peer *pb = rt_peer(&t, b[1]);
	peer_send(pw, df, nf, PEER_CLOSE);
	peer_send(pb, db, nb, PEER_SHUT);
	peer_expect(pb, nf);
	peer_expect(pc, strlen(first) + nb);
	CHECK_EQ(rt_start(&t), 0);
	/* Into a socket only when asked. */
	CHECK_EQ(t.r.dir[0].splicing, relay_mode == PBX_RELAY_SPLICE);
	CHECK(!t.r.dir[1].splicing); /* the owner's bytes go first */
	t.close_in_cb = true;
	CHECK(run_until(&t, cb_and_readers_done, 10000));
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, nf);
	CHECK_EQ(t.cb_ba, nb);
	check_received("A to B", pb, df, nf);
	uint8_t *want = malloc(strlen(first) + nb);
	REQUIRE(want != NULL);
	memcpy(want, first, strlen(first));
	memcpy(want + strlen(first), db, nb);
	check_received(
	    "B to A, after the owner's bytes", pc, want, strlen(first) + nb);
	free(want);
	CHECK_EQ(t.st[0].bytes_in, nf);
	CHECK_EQ(t.st[2].bytes_out, nf);
	CHECK_EQ(t.st[2].bytes_in, nb);
	CHECK_EQ(t.st[1].bytes_out, strlen(first) + nb);
	rt_fini(&t);

	/* A regular file as A's input copies; B's socket to a pipe splices. */
	int out[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(pipe2(out, O_CLOEXEC) == 0);
	REQUIRE(tcp_pair(b) == 0);
	t.r.a_in = rt_stream(&t, file);
	t.r.a_out = rt_stream(&t, out[1]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	struct peer *pr = rt_peer(&t, out[0]);
	pb = rt_peer(&t, b[1]);
	peer_send(pb, db, nb, PEER_SHUT);
	peer_expect(pb, nf);
	peer_expect(pr, nb);
	CHECK_EQ(rt_start(&t), 0);
	CHECK(!t.r.dir[0].splicing);
	CHECK_EQ(t.r.dir[1].splicing, relay_mode != PBX_RELAY_COPY);
	t.close_in_cb = true;
	CHECK(run_until(&t, cb_and_readers_done, 10000));
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, nf);
	CHECK_EQ(t.cb_ba, nb);
	check_received("file to B", pb, df, nf);
	check_received("B to the pipe", pr, db, nb);
	CHECK_EQ(t.st[2].bytes_in, nb);
	CHECK_EQ(t.st[1].bytes_out, nb);
	rt_fini(&t);
	free(db);
	free(df);
}

/* ---------------------------------------------------------------- */
/* cb never runs inside pbx_relay_start                               */
/* ---------------------------------------------------------------- */

/* Both inputs have ended (one with bytes) before the relay starts. */
static void
test_relay_cb_not_in_start_ended_inputs(void)
{
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	CHECK_EQ(write(a[1], "abc", 3), 3);
	CHECK_EQ(shutdown(a[1], SHUT_WR), 0);
	CHECK_EQ(shutdown(b[1], SHUT_WR), 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	rt_peer(&t, a[1]);
	struct peer *pb = rt_peer(&t, b[1]);
	peer_expect(pb, 16);
	CHECK_EQ(rt_start(&t), 0);
	CHECK_EQ(t.cb_calls, 0);
	CHECK(run_until(&t, cb_called, 5000));
	CHECK(!t.cb_in_start);
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, 3);
	CHECK_EQ(t.cb_ba, 0);
	rt_close(&t);
	t.watch = pb;
	CHECK(run_until(&t, watch_eof, 5000));
	check_received("A to B", pb, "abc", 3);
	rt_fini(&t);
}

/* B's peer reset before the relay starts. */
static void
test_relay_cb_not_in_start_reset(void)
{
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(tcp_pair(b) == 0);
	close_reset(b[1]);
	sleep_ms(20);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	rt_peer(&t, a[1]);
	CHECK_EQ(rt_start(&t), 0);
	CHECK_EQ(t.cb_calls, 0);
	CHECK(run_until(&t, cb_called, 5000));
	CHECK(!t.cb_in_start);
	check_reset_error(&t, 1);
	rt_fini(&t);
}

/* Side A is two regular files (always ready; epoll refuses them): an
 * empty input and an output that gets B's bytes. */
static void
test_relay_cb_not_in_start_files(void)
{
	struct rt t;
	int b[2];
	REQUIRE(rt_init(&t) == 0);
	int fin = temp_file(NULL, 0), fout = temp_file(NULL, 0);
	REQUIRE(fin >= 0 && fout >= 0);
	REQUIRE(unix_pair(b) == 0);
	CHECK_EQ(write(b[1], "xyz", 3), 3);
	CHECK_EQ(shutdown(b[1], SHUT_WR), 0);
	t.r.a_in = rt_stream(&t, fin);
	t.r.a_out = rt_stream(&t, fout);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	struct peer *pb = rt_peer(&t, b[1]);
	peer_expect(pb, 16);
	CHECK_EQ(rt_start(&t), 0);
	CHECK_EQ(t.cb_calls, 0);
	CHECK(run_until(&t, cb_called, 5000));
	CHECK(!t.cb_in_start);
	CHECK_EQ(t.cb_err, 0);
	CHECK_EQ(t.cb_ab, 0);
	CHECK_EQ(t.cb_ba, 3);
	char buf[8] = {0};
	CHECK_EQ(pread(fout, buf, sizeof buf, 0), 3);
	CHECK(memcmp(buf, "xyz", 3) == 0);
	t.watch = pb;
	CHECK(run_until(&t, watch_eof, 5000)); /* the empty file's end */
	CHECK_EQ(pb->in_len, 0);
	rt_fini(&t);
}

/* Streams already closed: either pbx_relay_start fails (and no cb is to
 * come) or it succeeds and cb comes from the loop; never cb inside. */
static void
test_relay_cb_not_in_start_closed_streams(void)
{
	struct rt t;
	int a[2], b[2];
	REQUIRE(rt_init(&t) == 0);
	REQUIRE(unix_pair(a) == 0);
	REQUIRE(unix_pair(b) == 0);
	t.r.a_in = t.r.a_out = rt_stream(&t, a[0]);
	t.r.b_in = t.r.b_out = rt_stream(&t, b[0]);
	rt_peer(&t, a[1]);
	rt_peer(&t, b[1]);
	rt_close(&t);
	int rc = rt_start(&t);
	if (t.cb_in_start)
		CHECK_FAILED("cb ran inside pbx_relay_start (which returned "
			     "%d, err %d, where %d)",
		    rc, t.cb_err, t.cb_where);
	t.cb_in_start = false; /* reported once, here */
	if (rc < 0 && t.cb_calls != 0)
		CHECK_FAILED(
		    "pbx_relay_start returned %d after calling cb", rc);
	if (rc == 0) {
		CHECK(run_until(&t, cb_called, 5000));
		CHECK_EQ(t.cb_calls, 1);
	}
	rt_fini(&t);
}

/* ---------------------------------------------------------------- */
/* The blocking pbx_relay with a regular file as its local input      */
/* ---------------------------------------------------------------- */

/* The socket's peer, in a child: what it does and what it saw. */
struct bpeer {
	int sock;
	const uint8_t *want; /* the file's bytes, in the child's copy */
	size_t want_len;
	const char *first; /* sent, then SHUT_WR, before reading */
	int delay_ms;      /* before reading */
	const char *after; /* sent after the end of stream, before close */
};
struct bpeer_result {
	size_t got, diff;
	bool eof;
};

/* Read until end of stream (5 s without a byte is a failure). */
static struct bpeer_result
bpeer_read(const struct bpeer *b)
{
	struct bpeer_result res = {0};
	uint8_t buf[CHUNK];
	res.diff = SIZE_MAX;
	for (;;) {
		struct pollfd p = {.fd = b->sock, .events = POLLIN};
		if (poll(&p, 1, 5000) != 1)
			return res;
		ssize_t n = read(b->sock, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			res.eof = n == 0;
			return res;
		}
		for (size_t i = 0; i < (size_t)n && res.diff == SIZE_MAX; i++)
			if (res.got + i >= b->want_len ||
			    buf[i] != b->want[res.got + i])
				res.diff = res.got + i;
		res.got += (size_t)n;
	}
}

static void
bpeer_main(const struct bpeer *b, int res_fd)
{
	alarm(15);
	if (b->first != NULL) {
		size_t n = strlen(b->first);
		if (write(b->sock, b->first, n) != (ssize_t)n ||
		    shutdown(b->sock, SHUT_WR) != 0)
			_exit(2);
	}
	sleep_ms(b->delay_ms);
	struct bpeer_result res = bpeer_read(b);
	if (res.diff == SIZE_MAX)
		res.diff = res.got;
	if (res.eof && b->after != NULL) {
		size_t n = strlen(b->after);
		if (write(b->sock, b->after, n) != (ssize_t)n)
			_exit(3);
	}
	close(b->sock);
	if (write(res_fd, &res, sizeof res) != (ssize_t)sizeof res)
		_exit(4);
	_exit(0);
}

/* Fork the peer on tcp[1]; others are the parent's fds it must not keep.
 * Returns the pid; *res_r reads its result. */
static pid_t
bpeer_start(
    struct bpeer *b, int tcp[2], const int *others, size_t n, int *res_r)
{
	int res[2];
	if (pipe2(res, O_CLOEXEC) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(res[0]);
		close(tcp[0]);
		for (size_t i = 0; i < n; i++)
			close(others[i]);
		b->sock = tcp[1];
		bpeer_main(b, res[1]);
	}
	close(res[1]);
	close(tcp[1]);
	if (pid < 0)
		close(res[0]);
	*res_r = res[0];
	return pid;
}

static bool
bpeer_finish(pid_t pid, int res_r, struct bpeer_result *res)
{
	struct pollfd p = {.fd = res_r, .events = POLLIN};
	bool ok = poll(&p, 1, 10000) == 1 &&
		  read(res_r, res, sizeof *res) == (ssize_t)sizeof *res;
	close(res_r);
	if (!ok)
		kill(pid, SIGKILL);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void
check_left_open(int in, int out, int sock)
{
	CHECK(is_open(in));
	CHECK(is_open(out));
	CHECK(is_open(sock));
	CHECK((fcntl(sock, F_GETFL) & O_NONBLOCK) != 0);
}

/* The whole file reaches the socket, then a FIN; the peer answers only
 * after that end, and its answer lands in the (regular file) output. */
static void
test_relay_blocking_file_to_socket(void)
{
	default_sigpipe();
	const size_t n = 3 * MIB + 11;
	uint8_t *data = make_random(n, 9);
	REQUIRE(data != NULL);
	int in = temp_file(data, n), out = temp_file(NULL, 0), tcp[2], res_r;
	REQUIRE(in >= 0 && out >= 0);
	REQUIRE(tcp_pair(tcp) == 0);
	struct bpeer b = {.want = data, .want_len = n, .after = "done"};
	int others[] = {in, out};
	pid_t pid = bpeer_start(&b, tcp, others, 2, &res_r);
	REQUIRE(pid > 0);
	struct pbx_relay_stats st = {0};
	int where = -1;
	CHECK_EQ(pbx_relay(in, out, tcp[0], relay_mode, &st, &where), 0);
	CHECK_EQ(st.to_socket, n);
	CHECK_EQ(st.from_socket, 4);
	char buf[16] = {0};
	CHECK_EQ(pread(out, buf, sizeof buf, 0), 4);
	CHECK_STR(buf, "done");
	check_left_open(in, out, tcp[0]);
	close(tcp[0]);
	struct bpeer_result res = {0};
	CHECK(bpeer_finish(pid, res_r, &res));
	CHECK_EQ(res.got, n);
	CHECK_EQ(res.diff, n);
	CHECK(res.eof);
	close(in);
	close(out);
	free(data);
}

/*
 * The peer sends one byte and its FIN at once, then reads only after
 * 300 ms, so the socket's end comes while the file (16 MiB, far beyond
 * what the socket buffers hold) is being relayed.
 */
static void
check_blocking_socket_ends_first(int flags, bool whole_file)
{
	default_sigpipe();
	const size_t n = 16 * MIB;
	uint8_t *data = make_random(n, 10);
	REQUIRE(data != NULL);
	int in = temp_file(data, n), out[2], tcp[2], res_r;
	REQUIRE(in >= 0);
	REQUIRE(pipe2(out, O_CLOEXEC) == 0);
	REQUIRE(tcp_pair(tcp) == 0);
	struct bpeer b = {
	    .want = data, .want_len = n, .first = "x", .delay_ms = 300};
	int others[] = {in, out[0], out[1]};
	pid_t pid = bpeer_start(&b, tcp, others, 3, &res_r);
	REQUIRE(pid > 0);
	struct pbx_relay_stats st = {0};
	int where = -1;
	CHECK_EQ(
	    pbx_relay(in, out[1], tcp[0], flags | relay_mode, &st, &where), 0);
	CHECK_EQ(st.from_socket, 1);
	if (whole_file)
		CHECK_EQ(st.to_socket, n);
	else
		CHECK(st.to_socket < n);
	char c = 0;
	set_nonblock(out[0]);
	CHECK_EQ(read(out[0], &c, 1), 1);
	CHECK_EQ(c, 'x');
	check_left_open(in, out[1], tcp[0]);
	close(tcp[0]);
	struct bpeer_result res = {0};
	CHECK(bpeer_finish(pid, res_r, &res));
	CHECK_EQ(res.got, st.to_socket); /* every byte counted arrived */
	CHECK_EQ(res.diff, res.got);
	CHECK(res.eof);
	close(in);
	close(out[0]);
	close(out[1]);
	free(data);
}

static void
test_relay_blocking_wait_local(void)
{
	check_blocking_socket_ends_first(PBX_RELAY_WAIT_LOCAL, true);
}

/* Without PBX_RELAY_WAIT_LOCAL the same run ends with the socket. */
static void
test_relay_blocking_ends_with_socket(void)
{
	check_blocking_socket_ends_first(0, false);
}

#define MODES(f)                                                               \
	static void f##_copy(void)                                             \
	{                                                                      \
		relay_mode = PBX_RELAY_COPY;                                   \
		f();                                                           \
	}                                                                      \
	static void f##_splice(void)                                           \
	{                                                                      \
		relay_mode = PBX_RELAY_SPLICE;                                 \
		f();                                                           \
	}
/* The same tests, copying and splicing. */
MODES(test_relay_both_ways_socketpair)
MODES(test_relay_both_ways_tcp)
MODES(test_relay_half_close_carried)
MODES(test_relay_fin_sent_before_cb)
MODES(test_relay_end_with_b)
MODES(test_relay_end_with_b_delivers_a)
MODES(test_relay_backpressure)
MODES(test_relay_b_reset_while_writing)
MODES(test_relay_b_reset_idle)
MODES(test_relay_a_reset_idle)
MODES(test_relay_error_free_after_close)
MODES(test_relay_local_pair_a)
MODES(test_relay_local_output_gone_no_sigpipe)
MODES(test_relay_splices_where_it_can)
MODES(test_relay_cb_not_in_start_ended_inputs)
MODES(test_relay_cb_not_in_start_reset)
MODES(test_relay_cb_not_in_start_files)
MODES(test_relay_cb_not_in_start_closed_streams)
MODES(test_relay_blocking_file_to_socket)
MODES(test_relay_blocking_wait_local)
MODES(test_relay_blocking_ends_with_socket)

CHECK_MAIN(TEST(test_relay_both_ways_socketpair),
    TEST(test_relay_both_ways_socketpair_copy),
    TEST(test_relay_both_ways_socketpair_splice),
    TEST(test_relay_both_ways_tcp), TEST(test_relay_both_ways_tcp_copy),
    TEST(test_relay_both_ways_tcp_splice), TEST(test_relay_half_close_carried),
    TEST(test_relay_half_close_carried_copy),
    TEST(test_relay_half_close_carried_splice),
    TEST(test_relay_fin_sent_before_cb),
    TEST(test_relay_fin_sent_before_cb_copy),
    TEST(test_relay_fin_sent_before_cb_splice), TEST(test_relay_end_with_b),
    TEST(test_relay_end_with_b_copy), TEST(test_relay_end_with_b_splice),
    TEST(test_relay_end_with_b_delivers_a),
    TEST(test_relay_end_with_b_delivers_a_copy),
    TEST(test_relay_end_with_b_delivers_a_splice),
    TEST(test_relay_backpressure), TEST(test_relay_backpressure_copy),
    TEST(test_relay_backpressure_splice),
    TEST(test_relay_b_reset_while_writing),
    TEST(test_relay_b_reset_while_writing_copy),
    TEST(test_relay_b_reset_while_writing_splice),
    TEST(test_relay_b_reset_idle), TEST(test_relay_b_reset_idle_copy),
    TEST(test_relay_b_reset_idle_splice), TEST(test_relay_a_reset_idle),
    TEST(test_relay_a_reset_idle_copy), TEST(test_relay_a_reset_idle_splice),
    TEST(test_relay_error_free_after_close),
    TEST(test_relay_error_free_after_close_copy),
    TEST(test_relay_error_free_after_close_splice),
    TEST(test_relay_local_pair_a), TEST(test_relay_local_pair_a_copy),
    TEST(test_relay_local_pair_a_splice),
    TEST(test_relay_local_output_gone_no_sigpipe),
    TEST(test_relay_local_output_gone_no_sigpipe_copy),
    TEST(test_relay_local_output_gone_no_sigpipe_splice),
    TEST(test_relay_splices_where_it_can),
    TEST(test_relay_splices_where_it_can_copy),
    TEST(test_relay_splices_where_it_can_splice),
    TEST(test_relay_cb_not_in_start_ended_inputs),
    TEST(test_relay_cb_not_in_start_ended_inputs_copy),
    TEST(test_relay_cb_not_in_start_ended_inputs_splice),
    TEST(test_relay_cb_not_in_start_reset),
    TEST(test_relay_cb_not_in_start_reset_copy),
    TEST(test_relay_cb_not_in_start_reset_splice),
    TEST(test_relay_cb_not_in_start_files),
    TEST(test_relay_cb_not_in_start_files_copy),
    TEST(test_relay_cb_not_in_start_files_splice),
    TEST(test_relay_cb_not_in_start_closed_streams),
    TEST(test_relay_cb_not_in_start_closed_streams_copy),
    TEST(test_relay_cb_not_in_start_closed_streams_splice),
    TEST(test_relay_blocking_file_to_socket),
    TEST(test_relay_blocking_file_to_socket_copy),
    TEST(test_relay_blocking_file_to_socket_splice),
    TEST(test_relay_blocking_wait_local),
    TEST(test_relay_blocking_wait_local_copy),
    TEST(test_relay_blocking_wait_local_splice),
    TEST(test_relay_blocking_ends_with_socket),
    TEST(test_relay_blocking_ends_with_socket_copy),
    TEST(test_relay_blocking_ends_with_socket_splice))
