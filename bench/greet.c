/* SPDX-License-Identifier: MIT */
/*
 * greet.c: the one greeting program that every "through a program" row
 * runs, linked -static so that starting it costs the same under every
 * server. It writes "Hello, person from IP:PORT\n" on fd 1 and exits.
 *
 * The caller's address comes from getpeername(0) when fd 0 is a TCP socket
 * (pbx, tcpserver, tcpsvd, ncat, inetd, systemd-socket-activate); when it
 * is not (socat's EXEC hands over a socketpair), from the first variable
 * pair that the server set: TCPREMOTEIP/TCPREMOTEPORT (UCSPI),
 * SOCAT_PEERADDR/SOCAT_PEERPORT, NCAT_REMOTE_ADDR/NCAT_REMOTE_PORT.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* "IP:PORT" of the peer on fd 0 into out; -1 if fd 0 is no TCP socket. */
static int
from_socket(char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char ip[INET6_ADDRSTRLEN];

	if (getpeername(0, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		return snprintf(out, len, "%s:%u", ip, ntohs(a->sin_port));
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		/* An IPv4 caller of a dual-stack socket reads as IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			inet_ntop(
			    AF_INET, &a->sin6_addr.s6_addr[12], ip, sizeof ip);
			return snprintf(
			    out, len, "%s:%u", ip, ntohs(a->sin6_port));
		}
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		return snprintf(out, len, "[%s]:%u", ip, ntohs(a->sin6_port));
	}
	return -1;
}

static int
from_env(char *out, size_t len)
{
	static const char *const names[][2] = {
	    {"TCPREMOTEIP", "TCPREMOTEPORT"},
	    {"SOCAT_PEERADDR", "SOCAT_PEERPORT"},
	    {"NCAT_REMOTE_ADDR", "NCAT_REMOTE_PORT"},
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const char *ip = getenv(names[i][0]);
		const char *port = getenv(names[i][1]);
		if (ip == NULL || port == NULL)
			continue;
		if (strchr(ip, ':') != NULL)
			return snprintf(out, len, "[%s]:%s", ip, port);
		return snprintf(out, len, "%s:%s", ip, port);
	}
	return -1;
}

int
main(void)
{
	char addr[128], line[192];

	if (from_socket(addr, sizeof addr) < 0 &&
	    from_env(addr, sizeof addr) < 0) {
		fprintf(stderr, "greet: no peer address on fd 0 or in env\n");
		return 1;
	}
	int len = snprintf(line, sizeof line, "Hello, person from %s\n", addr);
	for (int off = 0; off < len;) {
		ssize_t n = write(1, line + off, (size_t)(len - off));
		if (n < 0)
			return 1;
		off += (int)n;
	}
	return 0;
}
