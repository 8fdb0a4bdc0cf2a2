/* A coroipcs daemon: two services (see protocol.h) served from its own poll(2) loop.
 *
 *   server SOCKET_NAME
 *
 * Prints "ready" when listening, "connect S" / "exit S" per connection of service S.
 * SIGTERM or SIGINT: coroipcs_ipc_exit() and exit 0.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coroipcs.h"
#include "protocol.h"

#define MAX_WATCHED 1024

struct watched {
	int fd;
	void *context;
	int accept;
};

static struct watched watched[MAX_WATCHED];
static int n_watched;
static volatile sig_atomic_t stop;

/* Requests answered on the next loop turn (ECHO_LATER). */
static void *later[64];
static int n_later;

static int watch(int fd, void *context, int accept)
{
	if (n_watched == MAX_WATCHED)
		return -1;
	watched[n_watched].fd = fd;
	watched[n_watched].context = context;
	watched[n_watched].accept = accept;
	n_watched++;
	return 0;
}

static int poll_accept_add(int fd) { return watch(fd, NULL, 1); }

static int poll_dispatch_add(int fd, void *context) { return watch(fd, context, 0); }

static int poll_dispatch_destroy(int fd, void *context)
{
	for (int i = 0; i < n_watched; i++) {
		if (watched[i].fd == fd && watched[i].context == context) {
			watched[i] = watched[--n_watched];
			return 0;
		}
	}
	return -1;
}

static void log_printf(const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	fprintf(stderr, "server: ");
	vfprintf(stderr, format, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static int security_valid(int uid, int gid)
{
	(void)gid;
	return uid == 0 || (uid_t)uid == geteuid();
}

static int service_available(unsigned int service)
{
	return service == SVC_ECHO || service == SVC_COUNTER;
}

static int private_data_size_get(unsigned int service)
{
	return service == SVC_COUNTER ? (int)sizeof(uint32_t) : 0;
}

static int sending_allowed(unsigned int service, unsigned int id, const void *msg, void *data)
{
	(void)msg;
	(void)data;
	return !(service == SVC_COUNTER && id == COUNTER_BUSY);
}

static void sending_allowed_release(void *data) { (void)data; }

static int init_fn(void *conn)
{
	(void)conn;
	printf("connect\n");
	fflush(stdout);
	return 0;
}

static int exit_fn(void *conn)
{
	(void)conn;
	printf("exit\n");
	fflush(stdout);
	return 0;
}

static coroipcs_init_fn_lvalue init_fn_get(unsigned int service)
{
	(void)service;
	return init_fn;
}

static coroipcs_exit_fn_lvalue exit_fn_get(unsigned int service)
{
	(void)service;
	return exit_fn;
}

static void answer(void *conn, int id, uint32_t value)
{
	struct res_value res = { { sizeof(res), id, CS_OK }, value };
	cs_error_t err = coroipcs_response_send(conn, &res, sizeof(res));
	if (err != CS_OK)
		log_printf("response_send: %d", err);
}

static void echo_echo(void *conn, const void *msg)
{
	const coroipc_request_header_t *req = msg;
	size_t payload = (size_t)req->size - sizeof(*req);
	coroipc_response_header_t res = { (int)(sizeof(res) + payload), ECHO_ECHO, CS_OK };
	struct iovec iov[2] = {
		{ &res, sizeof(res) },
		{ (char *)msg + sizeof(*req), payload },
	};
	cs_error_t err = coroipcs_response_iov_send(conn, iov, 2);
	if (err != CS_OK)
		log_printf("response_iov_send: %d", err);
}

static void echo_dispatch(void *conn, const void *msg)
{
	const struct req_value *req = msg;
	uint32_t sent = 0;
	if (req->header.size != (int)sizeof(*req)) {
		answer(conn, ECHO_DISPATCH, 0);
		return;
	}
	for (; sent < req->value; sent++) {
		struct res_value ev = { { sizeof(ev), ECHO_DISPATCH, CS_OK }, sent };
		if (coroipcs_dispatch_send(conn, &ev, sizeof(ev)) != CS_OK)
			break;
	}
	answer(conn, ECHO_DISPATCH, sent);
}

static void echo_later(void *conn, const void *msg)
{
	struct res_value ev = { { sizeof(ev), ECHO_LATER, CS_OK }, 7 };
	(void)msg;
	coroipcs_dispatch_send(conn, &ev, sizeof(ev)); /* arrives while the client waits */
	if (n_later == 64 || coroipcs_refcount_inc(conn) != CS_OK) {
		answer(conn, ECHO_LATER, 0);
		return;
	}
	later[n_later++] = conn;
}

static void echo_hang(void *conn, const void *msg)
{
	(void)conn;
	(void)msg;
}

static void counter_count(void *conn, const void *msg)
{
	uint32_t *count = coroipcs_private_data_get(conn);
	(void)msg;
	if (count == NULL) {
		answer(conn, COUNTER_COUNT, 0);
		return;
	}
	answer(conn, COUNTER_COUNT, ++*count);
}

static void counter_busy(void *conn, const void *msg)
{
	(void)msg;
	answer(conn, COUNTER_BUSY, 0); /* never runs: sending_allowed refuses */
}

static coroipcs_handler_fn_lvalue handler_fn_get(unsigned int service, unsigned int id)
{
	static const coroipcs_handler_fn_lvalue echo[] = { echo_echo, echo_dispatch, echo_later, echo_hang };
	static const coroipcs_handler_fn_lvalue counter[] = { counter_count, counter_busy };
	if (service == SVC_ECHO && id < 4)
		return echo[id];
	if (service == SVC_COUNTER && id < 2)
		return counter[id];
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void answer_later(void)
{
	for (int i = 0; i < n_later; i++) {
		answer(later[i], ECHO_LATER, 42);
		coroipcs_refcount_dec(later[i]);
	}
	n_later = 0;
}

/* One turn of the loop: poll every watched fd, hand the ready ones to the library. */
static int turn(void)
{
	struct pollfd fds[MAX_WATCHED];
	struct watched snapshot[MAX_WATCHED];
	int n = n_watched;
	memcpy(snapshot, watched, sizeof(watched[0]) * (size_t)n);
	for (int i = 0; i < n; i++) {
		fds[i].fd = snapshot[i].fd;
		fds[i].events = POLLIN;
		fds[i].revents = 0;
	}
	answer_later(); /* what the last turn's handlers left, one poll later */
	int ready = poll(fds, (nfds_t)n, 100);
	if (ready < 0)
		return errno == EINTR ? 0 : -1;
	for (int i = 0; i < n; i++) {
		if (fds[i].revents == 0)
			continue;
		/* The fd may have been handed back by an earlier call of this turn. */
		int still = 0;
		for (int j = 0; j < n_watched; j++)
			still |= watched[j].fd == snapshot[i].fd && watched[j].context == snapshot[i].context;
		if (!still)
			continue;
		if (snapshot[i].accept)
			coroipcs_handler_accept(fds[i].fd, fds[i].revents, NULL);
		else
			coroipcs_handler_dispatch(fds[i].fd, fds[i].revents, snapshot[i].context);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SOCKET_NAME\n", argv[0]);
		return 2;
	}
	struct coroipcs_init_state state = {
		.socket_name = argv[1],
		.log_printf = log_printf,
		.security_valid = security_valid,
		.service_available = service_available,
		.private_data_size_get = private_data_size_get,
		.sending_allowed = sending_allowed,
		.sending_allowed_release = sending_allowed_release,
		.poll_accept_add = poll_accept_add,
		.poll_dispatch_add = poll_dispatch_add,
		.poll_dispatch_destroy = poll_dispatch_destroy,
		.init_fn_get = init_fn_get,
		.exit_fn_get = exit_fn_get,
		.handler_fn_get = handler_fn_get,
	};
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	cs_error_t err = coroipcs_ipc_init(&state);
	if (err != CS_OK) {
		fprintf(stderr, "coroipcs_ipc_init: %d\n", err);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		if (turn() < 0) {
			perror("poll");
			break;
		}
	}
	err = coroipcs_ipc_exit();
	if (err != CS_OK || n_watched != 0) {
		fprintf(stderr, "coroipcs_ipc_exit: %d, %d fds left\n", err, n_watched);
		return 1;
	}
	return 0;
}
