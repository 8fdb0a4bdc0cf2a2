/* A coroipcs daemon, written against corosync 1.4's coroipcs.h: two services (see
 * protocol.h) served from its own poll(2) loop, as corosync's exec/main.c does.
 *
 *   server SOCKET_NAME [v1]
 *
 * Starts with struct coroipcs_init_state_v2 (logsys-style logging and per-connection
 * statistics, as corosync's daemon), or with the v1 struct coroipcs_init_state when
 * given "v1". Prints "ready" when listening, "connect" / "exit" per connection.
 * SIGTERM or SIGINT: coroipcs_ipc_exit() and exit 0 if every fd was handed back and
 * every statistics handle destroyed. A failed start goes to fatal_error: exit 1.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h> /* coroipcs.h only declares struct iovec, as corosync's */
#include <unistd.h>

#include <corosync/coroipc_types.h>
#include <corosync/coroipcs.h>
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

static void fatal_error(const char *error_msg) __attribute__((noreturn));

static void fatal_error(const char *error_msg)
{
	fprintf(stderr, "server: fatal: %s\n", error_msg);
	exit(1);
}

static void watch(int fd, void *context, int accept)
{
	if (n_watched == MAX_WATCHED)
		fatal_error("too many fds to watch");
	watched[n_watched].fd = fd;
	watched[n_watched].context = context;
	watched[n_watched].accept = accept;
	n_watched++;
}

static void poll_accept_add(int fd) { watch(fd, NULL, 1); }

static void poll_dispatch_add(int fd, void *context) { watch(fd, context, 0); }

static int bad_destroys;

static void poll_dispatch_destroy(int fd, void *context)
{
	for (int i = 0; i < n_watched; i++) {
		if (watched[i].fd == fd && watched[i].context == context) {
			watched[i] = watched[--n_watched];
			return;
		}
	}
	bad_destroys++; /* an fd the library never gave */
}

static void old_log_printf(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void old_log_printf(const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	fprintf(stderr, "server: ");
	vfprintf(stderr, format, ap);
	va_end(ap);
}

static void log_printf(unsigned int rec_ident, const char *function_name, const char *file_name,
		       int file_line, const char *format, ...) __attribute__((format(printf, 5, 6)));

static void log_printf(unsigned int rec_ident, const char *function_name, const char *file_name,
		       int file_line, const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	fprintf(stderr, "server [level %u] %s (%s:%d): ", rec_ident & 7, function_name, file_name, file_line);
	vfprintf(stderr, format, ap);
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

/* corosync's daemon serialises its engines with one lock; the library takes it around
 * every handler and exit_fn. */
static pthread_mutex_t serialize = PTHREAD_MUTEX_INITIALIZER;
static int serialized;

static void serialize_lock(void)
{
	pthread_mutex_lock(&serialize);
	serialized = 1;
}

static void serialize_unlock(void)
{
	serialized = 0;
	pthread_mutex_unlock(&serialize);
}

static void must_be_serialized(const char *what)
{
	if (!serialized) {
		fprintf(stderr, "FAILED: %s ran outside serialize_lock\n", what);
		exit(1);
	}
}

static int sending_allowed(unsigned int service, unsigned int id, const void *msg, void *data)
{
	(void)msg;
	(void)data;
	must_be_serialized("sending_allowed");
	return !(service == SVC_COUNTER && id == COUNTER_BUSY);
}

static void sending_allowed_release(void *data) { (void)data; }

/* Statistics (v2): every connection's handle must be destroyed by the exit. */
static hdb_handle_t stats_next = 1;
static int stats_live;

static hdb_handle_t stats_create_connection(const char *name, pid_t pid, int fd)
{
	(void)name;
	(void)pid;
	(void)fd;
	stats_live++;
	return stats_next++;
}

static void stats_destroy_connection(hdb_handle_t handle)
{
	(void)handle;
	stats_live--;
}

static void stats_update_value(hdb_handle_t handle, const char *name, const void *value, size_t value_len)
{
	(void)handle;
	(void)name;
	(void)value;
	(void)value_len;
}

static void stats_increment_value(hdb_handle_t handle, const char *name)
{
	(void)handle;
	(void)name;
}

static void stats_decrement_value(hdb_handle_t handle, const char *name)
{
	(void)handle;
	(void)name;
}

static int init_fn(void *conn)
{
	(void)conn;
	printf("connect\n");
	fflush(stdout);
	return 0;
}

/* Every other call says "busy, call me again" (-1), as corosync's cpg exit_fn does
 * while totem's queue is full: the library must call it again until it is done, and
 * only then close the connection (and its statistics handle). "exit" is printed once
 * per connection, when it is done. */
static int exit_busy;

static int exit_fn(void *conn)
{
	(void)conn;
	must_be_serialized("exit_fn");
	exit_busy = !exit_busy;
	if (exit_busy) {
		printf("exit busy\n");
		fflush(stdout);
		return -1;
	}
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
	struct res_value res;
	memset(&res, 0, sizeof(res));
	res.header.size = sizeof(res);
	res.header.id = id;
	res.header.error = CS_OK;
	res.value = value;
	if (coroipcs_response_send(conn, &res, sizeof(res)) != 0)
		old_log_printf("response_send failed\n");
}

static void echo_echo(void *conn, const void *msg)
{
	const coroipc_request_header_t *req = msg;
	size_t payload = (size_t)req->size - sizeof(*req);
	coroipc_response_header_t res;
	memset(&res, 0, sizeof(res));
	res.size = (int)(sizeof(res) + payload);
	res.id = ECHO_ECHO;
	res.error = CS_OK;
	struct iovec iov[2] = {
		{ &res, sizeof(res) },
		{ (char *)msg + sizeof(*req), payload },
	};
	must_be_serialized("a handler");
	if (coroipcs_response_iov_send(conn, iov, 2) != 0)
		old_log_printf("response_iov_send failed\n");
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
		struct res_value ev;
		memset(&ev, 0, sizeof(ev));
		ev.header.size = sizeof(ev);
		ev.header.id = ECHO_DISPATCH;
		ev.header.error = CS_OK;
		ev.value = sent;
		if (coroipcs_dispatch_send(conn, &ev, sizeof(ev)) != 0)
			break;
	}
	answer(conn, ECHO_DISPATCH, sent);
}

static void echo_later(void *conn, const void *msg)
{
	struct res_value ev;
	(void)msg;
	memset(&ev, 0, sizeof(ev));
	ev.header.size = sizeof(ev);
	ev.header.id = ECHO_LATER;
	ev.header.error = CS_OK;
	ev.value = 7;
	coroipcs_dispatch_send(conn, &ev, sizeof(ev)); /* arrives while the client waits */
	if (n_later == 64) {
		answer(conn, ECHO_LATER, 0);
		return;
	}
	coroipcs_refcount_inc(conn); /* kept valid until answered */
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
	return NULL; /* the library answers CS_ERR_INVALID_PARAM */
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
		else if (coroipcs_handler_dispatch(fds[i].fd, fds[i].revents, snapshot[i].context) != 0)
			/* corosync's loop stops watching an fd whose handler says -1; this
			 * library never says it for a context it gave. */
			old_log_printf("handler_dispatch refused a context it gave\n");
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2 && !(argc == 3 && strcmp(argv[2], "v1") == 0)) {
		fprintf(stderr, "usage: %s SOCKET_NAME [v1]\n", argv[0]);
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (argc == 3) {
		struct coroipcs_init_state state = {
			.socket_name = argv[1],
			.malloc = malloc,
			.free = free,
			.log_printf = old_log_printf,
			.security_valid = security_valid,
			.service_available = service_available,
			.private_data_size_get = private_data_size_get,
			.serialize_lock = serialize_lock,
			.serialize_unlock = serialize_unlock,
			.sending_allowed = sending_allowed,
			.sending_allowed_release = sending_allowed_release,
			.poll_accept_add = poll_accept_add,
			.poll_dispatch_add = poll_dispatch_add,
			.poll_dispatch_destroy = poll_dispatch_destroy,
			.fatal_error = fatal_error,
			.init_fn_get = init_fn_get,
			.exit_fn_get = exit_fn_get,
			.handler_fn_get = handler_fn_get,
		};
		coroipcs_ipc_init(&state); /* a failure calls fatal_error: exit 1 */
	} else {
		struct coroipcs_init_state_v2 state = {
			.socket_name = argv[1],
			.malloc = malloc,
			.free = free,
			.old_log_printf = old_log_printf,
			.security_valid = security_valid,
			.service_available = service_available,
			.private_data_size_get = private_data_size_get,
			.serialize_lock = serialize_lock,
			.serialize_unlock = serialize_unlock,
			.sending_allowed = sending_allowed,
			.sending_allowed_release = sending_allowed_release,
			.poll_accept_add = poll_accept_add,
			.poll_dispatch_add = poll_dispatch_add,
			.poll_dispatch_destroy = poll_dispatch_destroy,
			.fatal_error = fatal_error,
			.init_fn_get = init_fn_get,
			.exit_fn_get = exit_fn_get,
			.handler_fn_get = handler_fn_get,
			.stats_create_connection = stats_create_connection,
			.stats_destroy_connection = stats_destroy_connection,
			.stats_update_value = stats_update_value,
			.stats_increment_value = stats_increment_value,
			.log_printf = log_printf,
			.log_subsys_id = 5,
			.stats_decrement_value = stats_decrement_value,
		};
		coroipcs_ipc_init_v2(&state);
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		if (turn() < 0) {
			perror("poll");
			break;
		}
	}
	answer_later(); /* drop the references still held */
	coroipcs_ipc_exit();
	if (n_watched != 0 || bad_destroys != 0 || stats_live != 0) {
		fprintf(stderr, "coroipcs_ipc_exit: %d fds left, %d unknown fds destroyed, %d statistics handles left\n",
			n_watched, bad_destroys, stats_live);
		return 1;
	}
	return 0;
}
