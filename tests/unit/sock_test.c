/* SPDX-License-Identifier: MIT */
/* Unit tests of the sock module on real loopback sockets, always port 0. */
#include "addr_util.h"
#include "check.h"
#include "pbx.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>

/* Same family, address and port (raw sockaddr fields, not via the lib). */
static bool
same_addr(const struct pbx_addr *a, const struct pbx_addr *b)
{
	if (a->u.sa.sa_family != b->u.sa.sa_family)
		return false;
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in4.sin_port == b->u.in4.sin_port &&
		       a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
	if (a->u.sa.sa_family == AF_INET6)
		return a->u.in6.sin6_port == b->u.in6.sin6_port &&
		       memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) ==
			   0;
	return false;
}

static uint16_t
raw_port(const struct pbx_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return ntohs(a->u.in4.sin_port);
	return ntohs(a->u.in6.sin6_port);
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

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Listen on ip:0; returns the fd and the bound address (real port). */
static int
listen_on(int family, const char *ip, struct pbx_addr *bound)
{
	struct pbx_addr a = mkaddr(family, ip, 0);
	struct pbx_listen_opts o = {0};
	int fd = pbx_listen(&a, &o);
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

/* ---------------------------------------------------------------- */

static void
check_listen_dial_accept(int family, const char *ip)
{
	struct pbx_addr bound;
	int lfd = listen_on(family, ip, &bound);
	REQUIRE(lfd >= 0);
	CHECK(is_cloexec(lfd));
	CHECK(!is_nonblock(lfd));
	CHECK_EQ(bound.u.sa.sa_family, family);
	CHECK(raw_port(&bound) != 0);
	CHECK_EQ(pbx_addr_port(&bound), raw_port(&bound));

	struct pbx_addr tried;
	memset(&tried, 0, sizeof tried);
	struct pbx_dial_opts d = {.tried = &tried};
	int cfd = pbx_dial(&bound, 1, &d);
	REQUIRE(cfd >= 0);
	CHECK(is_cloexec(cfd));
	CHECK(!is_nonblock(cfd));
	CHECK(same_addr(&tried, &bound));

	struct pbx_addr remote;
	memset(&remote, 0, sizeof remote);
	int afd = pbx_accept(lfd, &remote, 0);
	REQUIRE(afd >= 0);
	CHECK(is_cloexec(afd));
	CHECK(!is_nonblock(afd));

	struct pbx_addr clocal, cremote, alocal, aremote;
	REQUIRE(pbx_addr_local(cfd, &clocal) == 0);
	REQUIRE(pbx_addr_remote(cfd, &cremote) == 0);
	REQUIRE(pbx_addr_local(afd, &alocal) == 0);
	REQUIRE(pbx_addr_remote(afd, &aremote) == 0);
	CHECK(same_addr(&remote, &clocal));
	CHECK(same_addr(&aremote, &clocal));
	CHECK(same_addr(&cremote, &bound));
	CHECK(same_addr(&alocal, &bound));
	CHECK_EQ(remote.u.sa.sa_family, family);

	/* The two ends talk. */
	CHECK_EQ(write(cfd, "ping", 4), 4);
	char buf[8] = {0};
	CHECK_EQ(read(afd, buf, sizeof buf), 4);
	CHECK(memcmp(buf, "ping", 4) == 0);

	close(afd);
	close(cfd);
	close(lfd);
}

static void
test_sock_listen_dial_accept_v4(void)
{
	check_listen_dial_accept(AF_INET, "127.0.0.1");
}

static void
test_sock_listen_dial_accept_v6(void)
{
	check_listen_dial_accept(AF_INET6, "::1");
}

static void
test_sock_accept_remote_null_and_nonblock(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	int cfd = pbx_dial(&bound, 1, &(struct pbx_dial_opts){0});
	REQUIRE(cfd >= 0);
	int afd = pbx_accept(lfd, NULL, PBX_ACCEPT_NONBLOCK);
	CHECK(afd >= 0);
	if (afd >= 0) {
		CHECK(is_nonblock(afd));
		CHECK(is_cloexec(afd));
		char c;
		CHECK_EQ(read(afd, &c, 1), -1);
		CHECK_EQ(errno, EAGAIN);
		close(afd);
	}
	close(cfd);
	close(lfd);
}

static void
test_sock_dial_source_address(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	struct pbx_addr src = mkaddr(AF_INET, "127.0.0.2", 0);
	struct pbx_dial_opts d = {.source = &src};
	int cfd = pbx_dial(&bound, 1, &d);
	REQUIRE(cfd >= 0);
	struct pbx_addr remote;
	int afd = pbx_accept(lfd, &remote, 0);
	REQUIRE(afd >= 0);
	CHECK_EQ(remote.u.sa.sa_family, AF_INET);
	CHECK_EQ(ntohl(remote.u.in4.sin_addr.s_addr), 0x7f000002);
	char buf[PBX_ADDR_STRLEN];
	CHECK(pbx_addr_format_ip(&remote, buf, sizeof buf) > 0);
	CHECK_STR(buf, "127.0.0.2");
	close(afd);
	close(cfd);
	close(lfd);
}

static void
test_sock_dial_source_port(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	/* Find a free port on 127.0.0.2, then release it for the dial. */
	struct pbx_addr src;
	int hold = closed_port(AF_INET, "127.0.0.2", &src);
	REQUIRE(hold >= 0);
	close(hold);
	uint16_t want = raw_port(&src);
	REQUIRE(want != 0);

	struct pbx_dial_opts d = {.source = &src};
	int cfd = pbx_dial(&bound, 1, &d);
	REQUIRE(cfd >= 0);
	struct pbx_addr remote;
	int afd = pbx_accept(lfd, &remote, 0);
	REQUIRE(afd >= 0);
	CHECK_EQ(ntohl(remote.u.in4.sin_addr.s_addr), 0x7f000002);
	CHECK_EQ(raw_port(&remote), want);
	close(afd);
	close(cfd);
	close(lfd);
}

static void
test_sock_dual_stack_accepts_v4(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET6, "::", &bound);
	REQUIRE(lfd >= 0);
	uint16_t port = raw_port(&bound);
	struct pbx_addr target = mkaddr(AF_INET, "127.0.0.1", port);
	struct pbx_dial_opts d = {0};
	int cfd = pbx_dial(&target, 1, &d);
	REQUIRE(cfd >= 0);
	struct pbx_addr remote, clocal;
	int afd = pbx_accept(lfd, &remote, 0);
	REQUIRE(afd >= 0);
	REQUIRE(pbx_addr_local(cfd, &clocal) == 0);
	char want[PBX_ADDR_STRLEN], got[PBX_ADDR_STRLEN];
	snprintf(
	    want, sizeof want, "127.0.0.1:%u", (unsigned)raw_port(&clocal));
	CHECK(pbx_addr_format(&remote, got, sizeof got) > 0);
	CHECK_STR(got, want);
	CHECK(pbx_addr_format_ip(&remote, got, sizeof got) > 0);
	CHECK_STR(got, "127.0.0.1");
	CHECK_EQ(pbx_addr_port(&remote), raw_port(&clocal));
	close(afd);
	close(cfd);

	/* And an IPv6 client on the same listener. */
	target = mkaddr(AF_INET6, "::1", port);
	cfd = pbx_dial(&target, 1, &d);
	REQUIRE(cfd >= 0);
	afd = pbx_accept(lfd, &remote, 0);
	REQUIRE(afd >= 0);
	CHECK(pbx_addr_format_ip(&remote, got, sizeof got) > 0);
	CHECK_STR(got, "::1");
	close(afd);
	close(cfd);
	close(lfd);
}

static void
test_sock_v6only_refuses_v4(void)
{
	struct pbx_addr any6 = mkaddr(AF_INET6, "::", 0);
	struct pbx_listen_opts o = {.v6only = true};
	int lfd = pbx_listen(&any6, &o);
	REQUIRE(lfd >= 0);
	struct pbx_addr bound;
	REQUIRE(pbx_addr_local(lfd, &bound) == 0);
	uint16_t port = raw_port(&bound);
	REQUIRE(port != 0);

	struct pbx_addr target = mkaddr(AF_INET, "127.0.0.1", port);
	int cfd = pbx_dial(&target, 1, &(struct pbx_dial_opts){0});
	CHECK_EQ(cfd, -ECONNREFUSED);
	if (cfd >= 0)
		close(cfd);

	target = mkaddr(AF_INET6, "::1", port);
	cfd = pbx_dial(&target, 1, &(struct pbx_dial_opts){0});
	CHECK(cfd >= 0);
	if (cfd >= 0) {
		int afd = pbx_accept(lfd, NULL, 0);
		CHECK(afd >= 0);
		if (afd >= 0)
			close(afd);
		close(cfd);
	}
	close(lfd);
}

static void
test_sock_dial_refused(void)
{
	struct pbx_addr dead;
	int hold = closed_port(AF_INET, "127.0.0.1", &dead);
	REQUIRE(hold >= 0);
	struct pbx_addr tried;
	memset(&tried, 0, sizeof tried);
	struct pbx_dial_opts d = {.tried = &tried};
	CHECK_EQ(pbx_dial(&dead, 1, &d), -ECONNREFUSED);
	CHECK(same_addr(&tried, &dead));
	CHECK_STR(pbx_strerror(-ECONNREFUSED), "Connection refused");
	close(hold);
}

static void
test_sock_dial_tries_in_turn(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	struct pbx_addr addrs[2];
	int hold = closed_port(AF_INET, "127.0.0.1", &addrs[0]);
	REQUIRE(hold >= 0);
	addrs[1] = bound;

	struct pbx_addr tried;
	memset(&tried, 0, sizeof tried);
	struct pbx_dial_opts d = {.tried = &tried};
	int cfd = pbx_dial(addrs, 2, &d);
	CHECK(cfd >= 0);
	CHECK(same_addr(&tried, &addrs[1]));
	if (cfd >= 0) {
		struct pbx_addr cremote;
		CHECK_EQ(pbx_addr_remote(cfd, &cremote), 0);
		CHECK(same_addr(&cremote, &bound));
		int afd = pbx_accept(lfd, NULL, 0);
		CHECK(afd >= 0);
		if (afd >= 0)
			close(afd);
		close(cfd);
	}

	/* Two dead ends: the error of the last, and tried says which. */
	struct pbx_addr dead2[2];
	int hold2 = closed_port(AF_INET, "127.0.0.1", &dead2[1]);
	REQUIRE(hold2 >= 0);
	dead2[0] = addrs[0];
	memset(&tried, 0, sizeof tried);
	CHECK_EQ(pbx_dial(dead2, 2, &d), -ECONNREFUSED);
	CHECK(same_addr(&tried, &dead2[1]));
	close(hold2);
	close(hold);
	close(lfd);
}

static void
test_sock_dial_source_family_mismatch(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET6, "::1", &bound);
	REQUIRE(lfd >= 0);
	struct pbx_addr src = mkaddr(AF_INET, "127.0.0.1", 0);
	struct pbx_dial_opts d = {.source = &src};
	CHECK_EQ(pbx_dial(&bound, 1, &d), -EAFNOSUPPORT);

	/* A mixed list: only the address of the source's family is tried. */
	struct pbx_addr bound4;
	int lfd4 = listen_on(AF_INET, "127.0.0.1", &bound4);
	REQUIRE(lfd4 >= 0);
	struct pbx_addr addrs[2] = {bound, bound4};
	struct pbx_addr tried;
	d.tried = &tried;
	int cfd = pbx_dial(addrs, 2, &d);
	CHECK(cfd >= 0);
	CHECK(same_addr(&tried, &bound4));
	if (cfd >= 0)
		close(cfd);
	/* Nothing was queued on the IPv6 listener. */
	CHECK(pbx_set_nonblock(lfd, true) == 0);
	CHECK_EQ(pbx_accept(lfd, NULL, 0), -EAGAIN);
	close(lfd4);
	close(lfd);
}

static void
test_sock_listen_addr_in_use(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	struct pbx_listen_opts o = {0};
	int second = pbx_listen(&bound, &o);
	CHECK_EQ(second, -EADDRINUSE);
	if (second >= 0)
		close(second);
	CHECK_STR(pbx_strerror(-EADDRINUSE), "Address already in use");
	close(lfd);
}

static void
test_sock_listen_reuseport(void)
{
	struct pbx_addr a = mkaddr(AF_INET, "127.0.0.1", 0);
	struct pbx_listen_opts o = {.reuseport = true};
	int l1 = pbx_listen(&a, &o);
	REQUIRE(l1 >= 0);
	struct pbx_addr bound;
	REQUIRE(pbx_addr_local(l1, &bound) == 0);
	int l2 = pbx_listen(&bound, &o);
	CHECK(l2 >= 0);
	if (l2 >= 0)
		close(l2);
	close(l1);
}

static void
test_sock_listen_backlog_and_nonblock(void)
{
	struct pbx_addr a = mkaddr(AF_INET, "127.0.0.1", 0);
	struct pbx_listen_opts o = {.backlog = 1, .nonblock = true};
	int lfd = pbx_listen(&a, &o);
	REQUIRE(lfd >= 0);
	CHECK(is_nonblock(lfd));
	CHECK(is_cloexec(lfd));
	int one = 0;
	socklen_t len = sizeof one;
	CHECK_EQ(getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &one, &len), 0);
	CHECK_EQ(one, 1);
	close(lfd);
}

/* ---------------------------------------------------------------- */
/* Trace                                                              */
/* ---------------------------------------------------------------- */

struct trace_log {
	char lines[16][200];
	int n;
	bool newline; /* a line ended with '\n' */
};

static void
trace_collect(void *arg, const char *line)
{
	struct trace_log *log = arg;
	if (line == NULL) {
		CHECK_FAILED("trace line is NULL");
		return;
	}
	size_t len = strlen(line);
	if (len > 0 && line[len - 1] == '\n')
		log->newline = true;
	if (log->n < 16)
		snprintf(log->lines[log->n], sizeof log->lines[0], "%s", line);
	log->n++;
}

/* Index of the first line from 'from' that begins with word '(' . */
static int
trace_find(const struct trace_log *log, int from, const char *word)
{
	size_t wl = strlen(word);
	for (int i = from; i < log->n && i < 16; i++)
		if (strncmp(log->lines[i], word, wl) == 0 &&
		    log->lines[i][wl] == '(')
			return i;
	return -1;
}

static void
dump_trace(const struct trace_log *log)
{
	for (int i = 0; i < log->n && i < 16; i++)
		fprintf(stderr, "    trace[%d]: %s\n", i, log->lines[i]);
}

static void
test_sock_trace_listen(void)
{
	struct trace_log log = {0};
	struct pbx_addr a = mkaddr(AF_INET, "127.0.0.1", 0);
	struct pbx_listen_opts o = {.trace = trace_collect, .trace_arg = &log};
	int lfd = pbx_listen(&a, &o);
	REQUIRE(lfd >= 0);
	int s = trace_find(&log, 0, "socket");
	int b = s < 0 ? -1 : trace_find(&log, s + 1, "bind");
	int l = b < 0 ? -1 : trace_find(&log, b + 1, "listen");
	CHECK(s >= 0);
	CHECK(b > s);
	CHECK(l > b);
	CHECK(!log.newline);
	if (s >= 0) {
		CHECK(strstr(log.lines[s], "AF_INET") != NULL);
		CHECK(strstr(log.lines[s], "SOCK_STREAM") != NULL);
	}
	if (b >= 0)
		CHECK(strstr(log.lines[b], "127.0.0.1") != NULL);
	if (s < 0 || b < 0 || l < 0)
		dump_trace(&log);
	close(lfd);
}

static void
test_sock_trace_dial(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	struct trace_log log = {0};
	struct pbx_addr src = mkaddr(AF_INET, "127.0.0.2", 0);
	struct pbx_dial_opts d = {
	    .source = &src, .trace = trace_collect, .trace_arg = &log};
	int cfd = pbx_dial(&bound, 1, &d);
	REQUIRE(cfd >= 0);
	int s = trace_find(&log, 0, "socket");
	int b = s < 0 ? -1 : trace_find(&log, s + 1, "bind");
	int c = b < 0 ? -1 : trace_find(&log, b + 1, "connect");
	CHECK(s >= 0);
	CHECK(b > s);
	CHECK(c > b);
	CHECK(!log.newline);
	char port[16];
	snprintf(port, sizeof port, ":%u", (unsigned)raw_port(&bound));
	if (b >= 0)
		CHECK(strstr(log.lines[b], "127.0.0.2") != NULL);
	if (c >= 0)
		CHECK(strstr(log.lines[c], port) != NULL);
	if (s < 0 || b < 0 || c < 0)
		dump_trace(&log);
	int afd = pbx_accept(lfd, NULL, 0);
	CHECK(afd >= 0);
	if (afd >= 0)
		close(afd);
	close(cfd);
	close(lfd);
}

/* ---------------------------------------------------------------- */

static void
test_sock_accept_nonblock_empty(void)
{
	struct pbx_addr a = mkaddr(AF_INET, "127.0.0.1", 0);
	struct pbx_listen_opts o = {.nonblock = true};
	int lfd = pbx_listen(&a, &o);
	REQUIRE(lfd >= 0);
	struct pbx_addr remote;
	CHECK_EQ(pbx_accept(lfd, &remote, 0), -EAGAIN);
	CHECK_EQ(pbx_accept(lfd, NULL, PBX_ACCEPT_NONBLOCK), -EAGAIN);
	close(lfd);
}

static void
test_sock_close_reset(void)
{
	struct pbx_addr bound;
	int lfd = listen_on(AF_INET, "127.0.0.1", &bound);
	REQUIRE(lfd >= 0);
	int cfd = pbx_dial(&bound, 1, &(struct pbx_dial_opts){0});
	REQUIRE(cfd >= 0);
	int afd = pbx_accept(lfd, NULL, 0);
	REQUIRE(afd >= 0);
	CHECK_EQ(pbx_close_reset(afd), 0);
	struct pollfd p = {.fd = cfd, .events = POLLIN};
	CHECK_EQ(poll(&p, 1, 5000), 1);
	char c;
	errno = 0;
	CHECK_EQ(read(cfd, &c, 1), -1);
	CHECK_EQ(errno, ECONNRESET);
	close(cfd);
	close(lfd);
}

static void
test_sock_set_nonblock(void)
{
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK(!is_nonblock(sv[0]));
	CHECK_EQ(pbx_set_nonblock(sv[0], true), 0);
	CHECK(is_nonblock(sv[0]));
	CHECK_EQ(pbx_set_nonblock(sv[0], true), 0);
	CHECK(is_nonblock(sv[0]));
	CHECK_EQ(pbx_set_nonblock(sv[0], false), 0);
	CHECK(!is_nonblock(sv[0]));
	close(sv[0]);
	close(sv[1]);
	CHECK_EQ(pbx_set_nonblock(sv[0], true), -EBADF);
}

/*
 * A listener with backlog 1 whose queue is full drops further SYNs, so a
 * dial to it hangs: the per-address timeout must end it, on time.
 */
static void
test_sock_dial_timeout(void)
{
	struct pbx_addr a = mkaddr(AF_INET, "127.0.0.1", 0);
	struct pbx_listen_opts o = {.backlog = 1};
	int lfd = pbx_listen(&a, &o);
	REQUIRE(lfd >= 0);
	struct pbx_addr bound;
	REQUIRE(pbx_addr_local(lfd, &bound) == 0);
	int fds[16];
	int n = 0;
	int r = 0;
	int64_t elapsed = 0;
	struct pbx_dial_opts d = {.timeout_ms = 300};
	while (n < 16) {
		int64_t t0 = now_ms();
		r = pbx_dial(&bound, 1, &d);
		elapsed = now_ms() - t0;
		if (r < 0)
			break;
		fds[n++] = r;
	}
	CHECK_EQ(r, -ETIMEDOUT);
	CHECK(n >= 1);
	if (r == -ETIMEDOUT) {
		CHECK(elapsed >= 250);
		CHECK(elapsed < 2000);
	}
	CHECK_STR(pbx_strerror(-ETIMEDOUT), "Connection timed out");
	for (int i = 0; i < n; i++)
		close(fds[i]);
	close(lfd);
}

static void
test_sock_addr_local_remote_errors(void)
{
	struct pbx_addr a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(fd >= 0);
	CHECK_EQ(pbx_addr_remote(fd, &a), -ENOTCONN);
	close(fd);
	CHECK_EQ(pbx_addr_local(fd, &a), -EBADF);
}

CHECK_MAIN(TEST(test_sock_listen_dial_accept_v4),
    TEST(test_sock_listen_dial_accept_v6),
    TEST(test_sock_accept_remote_null_and_nonblock),
    TEST(test_sock_dial_source_address), TEST(test_sock_dial_source_port),
    TEST(test_sock_dual_stack_accepts_v4), TEST(test_sock_v6only_refuses_v4),
    TEST(test_sock_dial_refused), TEST(test_sock_dial_tries_in_turn),
    TEST(test_sock_dial_source_family_mismatch),
    TEST(test_sock_listen_addr_in_use), TEST(test_sock_listen_reuseport),
    TEST(test_sock_listen_backlog_and_nonblock), TEST(test_sock_trace_listen),
    TEST(test_sock_trace_dial), TEST(test_sock_accept_nonblock_empty),
    TEST(test_sock_close_reset), TEST(test_sock_set_nonblock),
    TEST(test_sock_dial_timeout), TEST(test_sock_addr_local_remote_errors))
