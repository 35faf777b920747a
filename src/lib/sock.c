/* SPDX-License-Identifier: MIT */
/* sock.c: the paper's socket steps: listen and accept (dial.c dials). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void
pbx__trace(pbx_trace_cb cb, void *arg, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (cb == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	cb(arg, line);
}

const char *
pbx__family_name(int family)
{
	return family == AF_INET6 ? "AF_INET6" : "AF_INET";
}

/* Close fd without losing the error that made us give up on it. */
static int
close_keep(int fd, int err)
{
	close(fd);
	return err;
}

int
pbx__socket(int family, int flags, pbx_trace_cb trace, void *arg)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	if (fd < 0)
		return -errno;
	/* Checked here: a varargs call costs even when it returns at once,
	 * and pbx bench opens a socket per call untraced. */
	if (trace != NULL)
		pbx__trace(trace, arg, "socket(%s, SOCK_STREAM) = %d",
		    pbx__family_name(family), fd);
	return fd;
}

int
pbx__bind(int fd, const struct pbx_addr *a, pbx_trace_cb trace, void *arg)
{
	char text[PBX_ADDR_STRLEN];

	pbx_addr_format(a, text, sizeof text);
	if (bind(fd, &a->u.sa, a->len) < 0) {
		int err = -errno;
		pbx__trace(trace, arg, "bind(%d, %s) failed: %s", fd, text,
		    pbx_strerror(err));
		return err;
	}
	pbx__trace(trace, arg, "bind(%d, %s)", fd, text);
	return 0;
}

static int
set_int_opt(int fd, int level, int name, int value)
{
	if (setsockopt(fd, level, name, &value, sizeof value) < 0)
		return -errno;
	return 0;
}

/* Keepalive and the user timeout, inherited by every accepted socket. */
static int
set_tcp_timers(int fd, const struct pbx_listen_opts *o)
{
	int r = 0;

	if (o->keepalive_idle_s > 0) {
		r = set_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
		if (r == 0)
			r = set_int_opt(
			    fd, IPPROTO_TCP, TCP_KEEPIDLE, o->keepalive_idle_s);
		if (r == 0 && o->keepalive_interval_s > 0)
			r = set_int_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL,
			    o->keepalive_interval_s);
		if (r == 0 && o->keepalive_count > 0)
			r = set_int_opt(
			    fd, IPPROTO_TCP, TCP_KEEPCNT, o->keepalive_count);
	}
	if (r == 0 && o->user_timeout_ms > 0)
		r = set_int_opt(
		    fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)o->user_timeout_ms);
	return r;
}

int
pbx_listen(const struct pbx_addr *addr, const struct pbx_listen_opts *o)
{
	static const struct pbx_listen_opts defaults;
	int family = pbx_addr_family(addr), r;

	if (o == NULL)
		o = &defaults;
	int backlog = o->backlog > 0 ? o->backlog : SOMAXCONN;
	int fd = pbx__socket(
	    family, o->nonblock ? SOCK_NONBLOCK : 0, o->trace, o->trace_arg);
	if (fd < 0)
		return fd;
	/* A restarted server must not wait out TIME_WAIT to bind again. */
	r = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (r == 0 && o->reuseport)
		r = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
	/* Dual-stack unless asked otherwise, whatever the sysctl default. */
	if (r == 0 && family == AF_INET6)
		r = set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6only);
	if (r == 0)
		r = set_tcp_timers(fd, o);
	if (r < 0)
		return close_keep(fd, r);
	r = pbx__bind(fd, addr, o->trace, o->trace_arg);
	if (r < 0)
		return close_keep(fd, r);
	if (o->bind_only)
		return fd;
	if (listen(fd, backlog) < 0)
		return close_keep(fd, -errno);
	pbx__trace(o->trace, o->trace_arg, "listen(%d, %d)", fd, backlog);
	return fd;
}

int
pbx_accept(int listen_fd, struct pbx_addr *remote, int flags)
{
	struct pbx_addr tmp;
	struct pbx_addr *a = remote != NULL ? remote : &tmp;
	int sflags = SOCK_CLOEXEC;

	if (flags & PBX_ACCEPT_NONBLOCK)
		sflags |= SOCK_NONBLOCK;
	for (;;) {
		socklen_t len = sizeof a->u;
		int fd = accept4(listen_fd, &a->u.sa, &len, sflags);
		if (fd >= 0) {
			a->len = len;
			return fd;
		}
		if (errno != EINTR)
			return -errno;
	}
}

int
pbx_sock_idle_ms(int fd, uint32_t *ms)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -errno;
	/* The kernel counts both from the last data segment, in ms. */
	*ms = ti.tcpi_last_data_recv < ti.tcpi_last_data_sent
		  ? ti.tcpi_last_data_recv
		  : ti.tcpi_last_data_sent;
	return 0;
}

int
pbx_close_reset(int fd)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};
	int r = 0;

	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

int
pbx_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	int want = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	if (want != fl && fcntl(fd, F_SETFL, want) < 0)
		return -errno;
	return 0;
}
