/* SPDX-License-Identifier: MIT */
/* relay.c: copy a local pair and a socket both ways, half-close included. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#define RELAY_BUF 65536

/*
 * Bytes read from the local side, waiting to go into the socket. The
 * socket is non-blocking, so a peer that stops reading never stops us from
 * reading what it sends (a blocking write there can deadlock against an
 * echoing peer). The local output stays as the caller set it: changing a
 * terminal's O_NONBLOCK would change it for the shell too.
 */
struct relay {
	int in_fd, out_fd, sock_fd, flags;
	char *up; /* owned: local -> socket */
	size_t up_off, up_len;
	bool in_eof, sock_eof, shut;
	char *down; /* owned: socket -> local */
	struct pbx_relay_stats *stats;
	int *where;
};

static int
fail(struct relay *r, int err, int side)
{
	if (r->where != NULL)
		*r->where = side;
	return err;
}

/* Push pending local bytes into the socket as far as it takes them. */
static int
flush_up(struct relay *r)
{
	while (r->up_off < r->up_len) {
		ssize_t n = pbx_write_some(
		    r->sock_fd, r->up + r->up_off, r->up_len - r->up_off);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return fail(r, (int)n, 1);
		r->up_off += (size_t)n;
		r->stats->to_socket += (uint64_t)n;
	}
	r->up_off = r->up_len = 0;
	return 0;
}

static int
read_local(struct relay *r)
{
	ssize_t n = pbx_read_some(r->in_fd, r->up, RELAY_BUF);
	if (n == -EAGAIN)
		return 0;
	if (n == -EBADF || n == 0) {
		r->in_eof = true;
		return 0;
	}
	if (n < 0)
		return fail(r, (int)n, 0);
	r->up_len = (size_t)n;
	return flush_up(r);
}

static int
read_socket(struct relay *r)
{
	ssize_t n = pbx_read_some(r->sock_fd, r->down, RELAY_BUF);
	if (n == -EAGAIN)
		return 0;
	if (n == 0) {
		r->sock_eof = true;
		return 0;
	}
	if (n < 0)
		return fail(r, (int)n, 1);
	ssize_t w = pbx_write_all(r->out_fd, r->down, (size_t)n);
	if (w < 0)
		return fail(r, (int)w, 0);
	r->stats->from_socket += (uint64_t)n;
	return 0;
}

static bool
finished(const struct relay *r)
{
	bool local_done = r->in_eof && r->up_len == 0;

	if (r->sock_eof)
		return !(r->flags & PBX_RELAY_WAIT_LOCAL) || local_done;
	return false;
}

static int
relay_step(struct relay *r)
{
	struct pollfd p[2] = {{.fd = -1}, {.fd = r->sock_fd}};
	int e;

	if (r->in_eof && r->up_len == 0 && !r->shut) {
		r->shut = true;
		e = pbx_shutdown_write(r->sock_fd);
		if (e < 0 && e != -ENOTCONN)
			return fail(r, e, 1);
	}
	if (!r->in_eof && r->up_len == 0)
		p[0] = (struct pollfd){.fd = r->in_fd, .events = POLLIN};
	if (!r->sock_eof)
		p[1].events |= POLLIN;
	if (r->up_len > 0)
		p[1].events |= POLLOUT;
	if (poll(p, 2, -1) < 0)
		return errno == EINTR ? 0 : fail(r, -errno, 0);
	e = 0;
	if (p[0].revents & POLLNVAL)
		r->in_eof = true;
	else if (p[0].revents != 0)
		e = read_local(r);
	if (e == 0 && (p[1].revents & POLLOUT))
		e = flush_up(r);
	if (e == 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
		e = read_socket(r);
	return e;
}

int
pbx_relay(int in_fd, int out_fd, int sock_fd, int flags,
    struct pbx_relay_stats *stats, int *where)
{
	struct pbx_relay_stats ignored = {0};
	struct relay r = {
	    .in_fd = in_fd,
	    .out_fd = out_fd,
	    .sock_fd = sock_fd,
	    .flags = flags,
	    .stats = stats != NULL ? stats : &ignored,
	    .where = where,
	};
	int e = pbx_set_nonblock(sock_fd, true);

	if (e < 0)
		return fail(&r, e, 1);
	*r.stats = (struct pbx_relay_stats){0};
	r.up = malloc(RELAY_BUF);
	r.down = malloc(RELAY_BUF);
	if (r.up == NULL || r.down == NULL) {
		e = fail(&r, -ENOMEM, 0);
		goto out_free;
	}
	while (e == 0 && !finished(&r))
		e = relay_step(&r);
out_free:
	free(r.up);
	free(r.down);
	return e;
}
