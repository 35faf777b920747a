/* SPDX-License-Identifier: MIT */
/*
 * addr_util.h: building a struct pbx_addr by hand in tests, without the
 * library's parser (expectations must not come from the code under test).
 */
#ifndef ADDR_UTIL_H
#define ADDR_UTIL_H

#include "check.h"
#include "pbx.h"

#include <arpa/inet.h>
#include <string.h>

static struct pbx_addr
mkaddr(int family, const char *ip, uint16_t port)
{
	struct pbx_addr a;
	memset(&a, 0, sizeof a);
	if (family == AF_INET) {
		a.u.in4.sin_family = AF_INET;
		a.u.in4.sin_port = htons(port);
		if (inet_pton(AF_INET, ip, &a.u.in4.sin_addr) != 1)
			CHECK_FAILED("inet_pton(AF_INET, %s) failed", ip);
		a.len = sizeof a.u.in4;
	} else {
		a.u.in6.sin6_family = AF_INET6;
		a.u.in6.sin6_port = htons(port);
		if (inet_pton(AF_INET6, ip, &a.u.in6.sin6_addr) != 1)
			CHECK_FAILED("inet_pton(AF_INET6, %s) failed", ip);
		a.len = sizeof a.u.in6;
	}
	return a;
}

#endif /* ADDR_UTIL_H */
