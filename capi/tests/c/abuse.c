/* Feeds every libcoroipc function (corosync 1.4's coroipcc.h / coroipcs.h) NULLs, zero
 * lengths, headers that lie about their size, out-of-range ids, oversize requests,
 * made-up, foreign and freed handles, zcb pointers that are not, and re-entry from the
 * server's own callbacks: each must give its error (never crash), and nothing may leak
 * (run under ASan/LSan by the tests). Also: admission control (sending_allowed 0 and
 * -1), commands without a handler, handlers, handler_fn_get (asked only for admitted
 * requests) and exit_fn under serialize_lock, private
 * data through the daemon's allocator (every allocation freed), statistics handles
 * (every one destroyed), no descriptor left open, dispatch sent from a thread other
 * than the loop, coroipcs_ipc_service_exit with references held; typed pointers not
 * aligned for their type; a request above the server's grant (no huge copy first); a
 * nested coroipcc_dispatch_get keeping the outer message intact; a dispatch_put from
 * a thread that holds nothing.
 *
 *   abuse SOCKET_NAME          everything above; prints "ok abuse"
 *   abuse SOCKET_NAME waiting  coroipcc_service_disconnect while another thread waits
 *                              (in coroipcc_dispatch_get; in a request never
 *                              answered), and its dispatch side while another
 *                              thread's request waits; prints "ok waiting"
 *
 * A server (own poll loop on a thread) and its clients in one process.
 *
 * The server functions return what corosync's do: void for init, exit and the
 * reference counts (failures of init go to fatal_error), int 0 / -1 for the sends,
 * coroipcs_ipc_service_exit, coroipcs_handler_accept / _dispatch. Where the old
 * libcoroipc API returned a cs_error_t (CS_ERR_BUSY, CS_ERR_BAD_HANDLE, ...), this
 * program checks the int, the fatal_error calls, or the effect instead.
 */
#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <corosync/coroipc_types.h>
#include <corosync/coroipcc.h>
#include <corosync/coroipcs.h>

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                      \
			fprintf(stderr, "\n");                             \
			exit(1);                                           \
		}                                                          \
	} while (0)
#define EXPECT(call, want) \
	do { cs_error_t got_ = (call); CHECK(got_ == (want), "%s = %d, want %d", #call, got_, want); } while (0)
#define EXPECT_INT(call, want) \
	do { int got_ = (call); CHECK(got_ == (want), "%s = %d, want %d", #call, got_, want); } while (0)

/* What the clients ask for at connect. */
#define REQ_SIZE 256
#define RES_SIZE 256
#define DISPATCH_SIZE 4096

/* Service 1's commands. */
#define CMD_PLAIN 0   /* answers a bare header, CS_OK */
#define CMD_MISUSE 1  /* misuses the server functions, then answers */
#define CMD_BUSY 2    /* sending_allowed says 0 (overloaded): never handled */
#define CMD_INVALID 3 /* sending_allowed says -1 (invalid): never handled */
#define CMD_HANG 4    /* never answered */
#define CMD_EVENTS 5  /* sends the dispatch messages of EVENTS, then answers */
/* Command 9 has no handler. Service 2 is not available; service 3 is, but has no
 * init_fn; services above COROIPCS_SERVICE_MAX are never asked about. */

/* ---- The daemon's poll loop: the fds the library hands it. ---- */

#define MAX_WATCHED 256
static struct { int fd; void *context; int accept; } watched[MAX_WATCHED];
static int n_watched;
static pthread_mutex_t watched_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop;
static atomic_int bad_destroys;
static void *_Atomic last_destroyed;

static void poll_accept_add(int fd)
{
	pthread_mutex_lock(&watched_lock);
	CHECK(n_watched < MAX_WATCHED, "too many fds");
	watched[n_watched].fd = fd;
	watched[n_watched].context = NULL;
	watched[n_watched++].accept = 1;
	pthread_mutex_unlock(&watched_lock);
}

static void poll_dispatch_add(int fd, void *context)
{
	pthread_mutex_lock(&watched_lock);
	CHECK(n_watched < MAX_WATCHED, "too many fds");
	watched[n_watched].fd = fd;
	watched[n_watched].context = context;
	watched[n_watched++].accept = 0;
	pthread_mutex_unlock(&watched_lock);
}

static void poll_dispatch_destroy(int fd, void *context)
{
	int found = 0;
	if (context != NULL)
		atomic_store(&last_destroyed, context);
	pthread_mutex_lock(&watched_lock);
	for (int i = 0; i < n_watched && !found; i++)
		if (watched[i].fd == fd && watched[i].context == context) {
			watched[i] = watched[--n_watched];
			found = 1;
		}
	pthread_mutex_unlock(&watched_lock);
	if (!found)
		atomic_fetch_add(&bad_destroys, 1);
}

static int watched_count(void)
{
	pthread_mutex_lock(&watched_lock);
	int n = n_watched;
	pthread_mutex_unlock(&watched_lock);
	return n;
}

/* A context the library gave (not the listener's), or NULL. */
static void *some_context(void)
{
	void *ctx = NULL;
	pthread_mutex_lock(&watched_lock);
	for (int i = 0; i < n_watched && ctx == NULL; i++)
		if (!watched[i].accept)
			ctx = watched[i].context;
	pthread_mutex_unlock(&watched_lock);
	return ctx;
}

static void *server_loop(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		struct pollfd fds[MAX_WATCHED];
		void *ctx[MAX_WATCHED];
		int acc[MAX_WATCHED];
		pthread_mutex_lock(&watched_lock);
		int n = n_watched;
		for (int i = 0; i < n; i++) {
			fds[i].fd = watched[i].fd;
			fds[i].events = POLLIN;
			fds[i].revents = 0;
			ctx[i] = watched[i].context;
			acc[i] = watched[i].accept;
		}
		pthread_mutex_unlock(&watched_lock);
		if (poll(fds, (nfds_t)n, 20) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (!fds[i].revents)
				continue;
			if (acc[i]) {
				EXPECT_INT(coroipcs_handler_accept(fds[i].fd, fds[i].revents, NULL), 0);
				continue;
			}
			/* The context may have been handed back earlier in this turn (-1). */
			int r = coroipcs_handler_dispatch(fds[i].fd, fds[i].revents, ctx[i]);
			CHECK(r == 0 || r == -1, "handler_dispatch: %d", r);
		}
	}
	return NULL;
}

/* ---- The daemon's other callbacks. ---- */

/* fatal_error: corosync's exits; this one counts and returns, which the library
 * allows ("a fatal_error that returns leaves the library uninitialised"). The field is
 * declared noreturn as in corosync, hence the cast; only the library calls it. */
static atomic_int fatals;

static void counting_fatal_error(const char *error_msg)
{
	CHECK(error_msg != NULL && error_msg[0] != '\0', "fatal_error with a reason");
	atomic_fetch_add(&fatals, 1);
}

typedef void (*fatal_fn)(const char *) __attribute__((noreturn));
#define FATAL_ERROR ((fatal_fn)counting_fatal_error)

static void expect_fatals(int want, const char *what)
{
	CHECK(atomic_load(&fatals) == want, "%s: %d fatal_error calls, want %d", what, atomic_load(&fatals), want);
}

static atomic_int logged;

static void log_printf(unsigned int rec_ident, const char *function_name, const char *file_name,
		       int file_line, const char *format, ...) __attribute__((format(printf, 5, 6)));

static void log_printf(unsigned int rec_ident, const char *function_name, const char *file_name,
		       int file_line, const char *format, ...)
{
	(void)rec_ident;
	(void)function_name;
	(void)file_name;
	(void)file_line;
	CHECK(format != NULL, "log format");
	atomic_fetch_add(&logged, 1);
}

static int private_size(unsigned int service) { (void)service; return 16; }

/* The daemon's allocator for private data: every allocation must be freed. */
static atomic_int allocated, freed;

static void *counting_malloc(size_t size)
{
	atomic_fetch_add(&allocated, 1);
	return malloc(size);
}

static void counting_free(void *ptr)
{
	atomic_fetch_add(&freed, 1);
	free(ptr);
}

static atomic_uint max_service_asked;

static int available(unsigned int service)
{
	unsigned int seen = atomic_load(&max_service_asked);
	while (service > seen && !atomic_compare_exchange_weak(&max_service_asked, &seen, service))
		;
	return service == 1 || service == 3;
}

static atomic_int deny;

static int security_valid(int uid, int gid)
{
	(void)gid;
	return !atomic_load(&deny) && (uid == 0 || (uid_t)uid == geteuid());
}

/* serialize_lock: handlers, sending_allowed and exit_fn must run under it. */
static pthread_mutex_t serialize = PTHREAD_MUTEX_INITIALIZER;
static pthread_t serialize_owner;
static atomic_int serialize_held;

static void serialize_lock(void)
{
	pthread_mutex_lock(&serialize);
	serialize_owner = pthread_self();
	atomic_store(&serialize_held, 1);
}

static void serialize_unlock(void)
{
	CHECK(atomic_load(&serialize_held) && pthread_equal(serialize_owner, pthread_self()),
	      "serialize_unlock without serialize_lock");
	atomic_store(&serialize_held, 0);
	pthread_mutex_unlock(&serialize);
}

static void must_be_serialized(const char *what)
{
	CHECK(atomic_load(&serialize_held) && pthread_equal(serialize_owner, pthread_self()),
	      "%s ran outside serialize_lock", what);
}

static atomic_int allowed_calls, allowed_releases;

static int sending_allowed(unsigned int service, unsigned int id, const void *msg, void *data)
{
	const coroipc_request_header_t *req = msg;
	must_be_serialized("sending_allowed");
	CHECK(service == 1 && req->id == (int)id && data != NULL, "sending_allowed's arguments");
	atomic_fetch_add(&allowed_calls, 1);
	return id == CMD_BUSY ? 0 : id == CMD_INVALID ? -1 : 1;
}

static void sending_allowed_release(void *data)
{
	CHECK(data != NULL, "sending_allowed_release's argument");
	atomic_fetch_add(&allowed_releases, 1);
}

/* Statistics (v2): every handle created must be destroyed. */
static atomic_int stats_live, stats_created;

static hdb_handle_t stats_create_connection(const char *name, pid_t pid, int fd)
{
	(void)fd;
	CHECK(name != NULL && pid == getpid(), "stats_create_connection's arguments");
	atomic_fetch_add(&stats_live, 1);
	return (hdb_handle_t)atomic_fetch_add(&stats_created, 1) + 1000;
}

static void stats_destroy_connection(hdb_handle_t handle)
{
	CHECK(handle >= 1000, "a handle stats_create_connection gave: %llu", (unsigned long long)handle);
	atomic_fetch_sub(&stats_live, 1);
}

static void stats_update_value(hdb_handle_t handle, const char *name, const void *value, size_t value_len)
{
	CHECK(handle >= 1000 && name != NULL && value != NULL && value_len > 0, "stats_update_value");
}

static void stats_increment_value(hdb_handle_t handle, const char *name)
{
	CHECK(handle >= 1000 && name != NULL, "stats_increment_value");
}

static void stats_decrement_value(hdb_handle_t handle, const char *name)
{
	CHECK(handle >= 1000 && name != NULL, "stats_decrement_value");
}

static void *_Atomic last_conn;
static atomic_int exits;
/* The connection of the main client (h). */
static void *h_conn;

/* Its result is ignored (corosync's coroipcs did): -1 does not refuse the client. */
static int init_fn(void *conn)
{
	char *priv = coroipcs_private_data_get(conn);
	CHECK(priv != NULL, "private data at init_fn");
	for (int i = 0; i < 16; i++)
		CHECK(priv[i] == 0, "private data zeroed");
	atomic_store(&last_conn, conn);
	return -1;
}

static int exit_fn(void *conn)
{
	must_be_serialized("exit_fn");
	CHECK(coroipcs_private_data_get(conn) != NULL, "private data valid in exit_fn");
	atomic_fetch_add(&exits, 1);
	return 0;
}

static coroipcs_init_fn_lvalue init_get(unsigned int s) { return s == 3 ? NULL : init_fn; }
static coroipcs_exit_fn_lvalue exit_get(unsigned int s) { (void)s; return exit_fn; }

static void respond_ok(void *conn)
{
	coroipc_response_header_t res;
	memset(&res, 0, sizeof(res));
	res.size = sizeof(res);
	res.error = CS_OK;
	EXPECT_INT(coroipcs_response_send(conn, &res, sizeof(res)), 0);
}

static void plain(void *conn, const void *msg)
{
	(void)msg;
	must_be_serialized("a handler");
	respond_ok(conn);
}

/* A full init state (for the re-entry and "already started" checks). */
static struct coroipcs_init_state full_state(const char *name)
{
	struct coroipcs_init_state state;
	memset(&state, 0, sizeof(state));
	state.socket_name = name;
	state.poll_accept_add = poll_accept_add;
	state.poll_dispatch_add = poll_dispatch_add;
	state.poll_dispatch_destroy = poll_dispatch_destroy;
	state.fatal_error = FATAL_ERROR;
	state.init_fn_get = init_get;
	state.exit_fn_get = exit_get;
	return state;
}

static coroipcs_handler_fn_lvalue handler_get(unsigned int s, unsigned int id);

/* Misuse of the server functions from inside a handler. */
static void misuse(void *conn, const void *msg)
{
	const coroipc_request_header_t *req = msg;
	coroipc_response_header_t res, lie;
	memset(&res, 0, sizeof(res));
	res.size = sizeof(res);
	res.error = CS_OK;
	lie = res;
	lie.size = sizeof(res) + 1;
	struct iovec iov = { &res, sizeof(res) };
	struct iovec bad_iov = { NULL, sizeof(res) };
	struct coroipcs_init_state state = full_state("abuse-reentered");
	state.handler_fn_get = handler_get;

	must_be_serialized("a handler");
	CHECK(req->size == (int)sizeof(*req) && req->id == CMD_MISUSE, "the header the client sent");
	CHECK(((uintptr_t)msg & 7) == 0, "msg is 8-aligned");
	/* Re-entering the server from its own callback: refused (logged; the old API said
	 * CS_ERR_BUSY), the server keeps running. accept returns 0 as corosync's. */
	EXPECT_INT(coroipcs_handler_accept(0, 0, NULL), 0);
	int r = coroipcs_handler_dispatch(0, 0, some_context());
	CHECK(r == 0 || r == -1, "re-entered handler_dispatch: %d", r);
	coroipcs_ipc_exit(); /* refused: does not stop the server (checked by the next requests) */
	EXPECT_INT(coroipcs_ipc_service_exit(1), -1); /* refused: call again */
	int before = atomic_load(&fatals);
	coroipcs_ipc_init(&state);
	expect_fatals(before + 1, "coroipcs_ipc_init from a handler");
	/* Responses and dispatch messages that are NULL, empty, short or lying: -1. */
	EXPECT_INT(coroipcs_response_send(conn, NULL, sizeof(res)), -1);
	EXPECT_INT(coroipcs_response_send(conn, &res, 0), -1);
	EXPECT_INT(coroipcs_response_send(conn, &res, 16), -1);
	EXPECT_INT(coroipcs_response_send(conn, &lie, sizeof(lie)), -1);
	EXPECT_INT(coroipcs_response_iov_send(conn, NULL, 1), -1);
	EXPECT_INT(coroipcs_response_iov_send(conn, &iov, 0), -1);
	EXPECT_INT(coroipcs_response_iov_send(conn, &bad_iov, 1), -1);
	EXPECT_INT(coroipcs_dispatch_send(conn, NULL, sizeof(res)), -1);
	EXPECT_INT(coroipcs_dispatch_send(conn, &res, 0), -1);
	EXPECT_INT(coroipcs_dispatch_send(conn, &res, 16), -1);
	EXPECT_INT(coroipcs_dispatch_send(conn, &lie, sizeof(lie)), -1);
	EXPECT_INT(coroipcs_dispatch_iov_send(conn, NULL, 1), -1);
	EXPECT_INT(coroipcs_dispatch_iov_send(conn, &iov, 0), -1);
	EXPECT_INT(coroipcs_dispatch_iov_send(conn, &bad_iov, 1), -1);
	coroipcs_refcount_dec(conn); /* no reference held: nothing happens */
	char *priv = coroipcs_private_data_get(conn);
	CHECK(priv != NULL, "private data after a stray refcount_dec");
	memcpy(priv, "private", 8); /* checked after the disconnect */
	/* A dispatch message through the iov path, then the real answer; a second answer
	 * has no request left. */
	EXPECT_INT(coroipcs_dispatch_iov_send(conn, &iov, 1), 0);
	EXPECT_INT(coroipcs_response_iov_send(conn, &iov, 1), 0);
	EXPECT_INT(coroipcs_response_send(conn, &res, sizeof(res)), -1);
}

static void never(void *conn, const void *msg)
{
	(void)conn;
	CHECK(0, "the handler of command %d ran although sending_allowed refused",
	      ((const coroipc_request_header_t *)msg)->id);
}

static void hang(void *conn, const void *msg)
{
	(void)conn;
	(void)msg;
}

/* The dispatch messages of CMD_EVENTS: a header (id 7) and `size - 24` bytes of
 * `fill`; the second is smaller than the first, the third larger. */
static const struct { int size; unsigned char fill; } EVENTS[] = { { 48, 0x11 }, { 32, 0x22 }, { 512, 0x33 } };
#define N_EVENTS (sizeof(EVENTS) / sizeof(EVENTS[0]))

static void events(void *conn, const void *msg)
{
	(void)msg;
	must_be_serialized("a handler");
	for (size_t i = 0; i < N_EVENTS; i++) {
		union { coroipc_response_header_t h; unsigned char bytes[512]; } ev;
		memset(ev.bytes, EVENTS[i].fill, sizeof(ev.bytes));
		ev.h.size = EVENTS[i].size;
		ev.h.id = 7;
		ev.h.error = CS_OK;
		EXPECT_INT(coroipcs_dispatch_send(conn, &ev, (size_t)EVENTS[i].size), 0);
	}
	respond_ok(conn);
}

/* handler_fn_get: asked under serialize_lock, only for a request sending_allowed
 * admitted (corosync's coroipcs: pthread_ipc_consumer). */
static atomic_int handler_gets;

static coroipcs_handler_fn_lvalue handler_get(unsigned int s, unsigned int id)
{
	must_be_serialized("handler_fn_get");
	atomic_fetch_add(&handler_gets, 1);
	CHECK(s == 1, "handler_fn_get for service %u", s);
	switch (id) {
	case CMD_PLAIN: return plain;
	case CMD_MISUSE: return misuse;
	case CMD_BUSY:
	case CMD_INVALID: return never;
	case CMD_HANG: return hang;
	case CMD_EVENTS: return events;
	default: return NULL;
	}
}

static struct coroipcs_init_state_v2 server_state(const char *name)
{
	struct coroipcs_init_state_v2 state = {
		.socket_name = name,
		.malloc = counting_malloc,
		.free = counting_free,
		.service_available = available,
		.private_data_size_get = private_size,
		.security_valid = security_valid,
		.serialize_lock = serialize_lock,
		.serialize_unlock = serialize_unlock,
		.sending_allowed = sending_allowed,
		.sending_allowed_release = sending_allowed_release,
		.poll_accept_add = poll_accept_add,
		.poll_dispatch_add = poll_dispatch_add,
		.poll_dispatch_destroy = poll_dispatch_destroy,
		.fatal_error = FATAL_ERROR,
		.init_fn_get = init_get,
		.exit_fn_get = exit_get,
		.handler_fn_get = handler_get,
		.stats_create_connection = stats_create_connection,
		.stats_destroy_connection = stats_destroy_connection,
		.stats_update_value = stats_update_value,
		.stats_increment_value = stats_increment_value,
		.log_printf = log_printf,
		.log_subsys_id = 3,
		.stats_decrement_value = stats_decrement_value,
	};
	return state;
}

/* ---- Helpers. ---- */

/* Open file descriptors of this process. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	CHECK(d != NULL, "/proc/self/fd");
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static hdb_handle_t connect_to(const char *name, unsigned int service)
{
	hdb_handle_t h = 0;
	EXPECT(coroipcc_service_connect(name, service, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &h), CS_OK);
	CHECK(h != 0, "a handle is never 0");
	return h;
}

/* Sends `real` bytes starting with the header {size, id}; the response header's error
 * in *error (when CS_OK). */
static cs_error_t request(hdb_handle_t h, int size, int id, size_t real, int *error)
{
	union { coroipc_request_header_t head; char bytes[REQ_SIZE + 16]; } buf;
	union { coroipc_response_header_t head; char bytes[64]; } res;
	CHECK(real <= sizeof(buf), "request() buffer");
	memset(&buf, 0, sizeof(buf));
	buf.head.size = size;
	buf.head.id = id;
	memset(&res, 0x5a, sizeof(res));
	struct iovec iov = { &buf, real };
	cs_error_t err = coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res));
	if (error != NULL)
		*error = err == CS_OK ? (int)res.head.error : -1;
	if (err == CS_OK)
		CHECK(res.head.size == (int)sizeof(coroipc_response_header_t), "response size %d", res.head.size);
	return err;
}

/* The ok request: a bare header for command 0. */
static cs_error_t ping(hdb_handle_t h)
{
	int error = 0;
	cs_error_t err = request(h, sizeof(coroipc_request_header_t), CMD_PLAIN, sizeof(coroipc_request_header_t), &error);
	if (err == CS_OK)
		CHECK(error == CS_OK, "ping's header error %d", error);
	return err;
}

static void wait_exits(int want)
{
	for (int i = 0; i < 500 && atomic_load(&exits) < want; i++)
		usleep(10000);
	CHECK(atomic_load(&exits) >= want, "%d exit_fn calls, want %d", atomic_load(&exits), want);
}

/* ---- The checks. ---- */

static void server_before_init(void)
{
	struct coroipcs_init_state state;
	char msg[24] = { 0 };

	/* Nothing to report to: nothing happens. */
	coroipcs_ipc_init(NULL);
	coroipcs_ipc_init_v2(NULL);
	/* Required callbacks missing: fatal_error, as corosync's (which had no such
	 * check and crashed). */
	memset(&state, 0, sizeof(state));
	state.socket_name = "abuse-x";
	state.fatal_error = FATAL_ERROR;
	coroipcs_ipc_init(&state); /* no poll callbacks */
	expect_fatals(1, "no poll callbacks");
	state = full_state("abuse-x");
	state.handler_fn_get = NULL;
	coroipcs_ipc_init(&state);
	expect_fatals(2, "no handler_fn_get");
	state = full_state("abuse-x");
	state.handler_fn_get = handler_get;
	state.init_fn_get = NULL;
	coroipcs_ipc_init(&state);
	expect_fatals(3, "no init_fn_get");
	state = full_state("abuse-x");
	state.handler_fn_get = handler_get;
	state.exit_fn_get = NULL;
	coroipcs_ipc_init(&state);
	expect_fatals(4, "no exit_fn_get");
	/* A state not aligned for its type (copied into a char buffer) is not read, as
	 * NULL: not even its fatal_error (this one would fail for its missing
	 * handler_fn_get if it were read). */
	union { struct coroipcs_init_state s; char bytes[sizeof(struct coroipcs_init_state) + 8]; } raw;
	memcpy(raw.bytes + 1, &state, sizeof(state));
	coroipcs_ipc_init((struct coroipcs_init_state *)(void *)(raw.bytes + 1));
	expect_fatals(4, "a misaligned init state");
	CHECK(watched_count() == 0, "no fd left behind by the failed inits");

	/* Not started: nothing to do, no crash. */
	EXPECT_INT(coroipcs_handler_accept(0, 0, NULL), 0);
	EXPECT_INT(coroipcs_handler_dispatch(0, 0, NULL), -1);
	EXPECT_INT(coroipcs_handler_dispatch(0, 0, (void *)0x1234), -1);
	coroipcs_ipc_exit();
	/* Not running and nothing held: done (-1 would make corosync's unload retry for
	 * ever). */
	EXPECT_INT(coroipcs_ipc_service_exit(1), 0);
	EXPECT_INT(coroipcs_ipc_service_exit(70000), 0); /* no such service */
	EXPECT_INT(coroipcs_response_send(NULL, msg, sizeof(msg)), -1);
	EXPECT_INT(coroipcs_dispatch_send((void *)0x1234, msg, sizeof(msg)), -1);
	coroipcs_refcount_inc(NULL);
	coroipcs_refcount_dec((void *)-1);
	CHECK(coroipcs_private_data_get(NULL) == NULL, "private data of NULL");
	CHECK(coroipcs_private_data_get((void *)0x1234) == NULL, "private data of a made-up conn");
	expect_fatals(4, "calls before init");
}

static void client_connects(const char *name)
{
	hdb_handle_t none = 0;

	EXPECT(coroipcc_service_connect(NULL, 1, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect(name, 1, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect("", 1, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect(name, 70000, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none), CS_ERR_INVALID_PARAM);
	/* A size of 0 (new in the corosync API). */
	EXPECT(coroipcc_service_connect(name, 1, 0, RES_SIZE, DISPATCH_SIZE, &none), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect(name, 1, REQ_SIZE, 0, DISPATCH_SIZE, &none), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect(name, 1, REQ_SIZE, RES_SIZE, 0, &none), CS_ERR_INVALID_PARAM);
	/* No such service: not available; available without an init_fn; above
	 * COROIPCS_SERVICE_MAX (service_available is not even asked). */
	EXPECT(coroipcc_service_connect(name, 2, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none), CS_ERR_NOT_EXIST);
	EXPECT(coroipcc_service_connect(name, 3, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none), CS_ERR_NOT_EXIST);
	EXPECT(coroipcc_service_connect(name, COROIPCS_SERVICE_MAX + 1, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none),
	       CS_ERR_NOT_EXIST);
	EXPECT(coroipcc_service_connect(name, 65535, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none), CS_ERR_NOT_EXIST);
	CHECK(atomic_load(&max_service_asked) <= COROIPCS_SERVICE_MAX,
	      "service_available asked about service %u", atomic_load(&max_service_asked));
	/* Nobody listens: CS_ERR_TRY_AGAIN as corosync's (the daemon is not running; the
	 * old libcoroipc API said CS_ERR_NOT_EXIST). */
	EXPECT(coroipcc_service_connect("coroipc-abuse-nobody-listens", 1, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none),
	       CS_ERR_TRY_AGAIN);
	EXPECT(coroipcc_service_connect("/nonexistent-dir/coroipc-abuse", 1, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none),
	       CS_ERR_TRY_AGAIN);
	/* An out-pointer not aligned for its type (into a char buffer): refused, nothing
	 * written (the library never makes a misaligned reference of it). */
	union { hdb_handle_t h; char bytes[2 * sizeof(hdb_handle_t)]; } raw;
	memset(&raw, 0, sizeof(raw));
	EXPECT(coroipcc_service_connect(name, 1, REQ_SIZE, RES_SIZE, DISPATCH_SIZE,
					(hdb_handle_t *)(void *)(raw.bytes + 1)),
	       CS_ERR_INVALID_PARAM);
	for (size_t i = 0; i < sizeof(raw.bytes); i++)
		CHECK(raw.bytes[i] == 0, "byte %zu of the misaligned handle written", i);
	/* Refused by security_valid. */
	atomic_store(&deny, 1);
	EXPECT(coroipcc_service_connect(name, 1, REQ_SIZE, RES_SIZE, DISPATCH_SIZE, &none), CS_ERR_ACCESS);
	atomic_store(&deny, 0);
	CHECK(none == 0, "no handle stored by a failed connect");
}

static void client_arguments(hdb_handle_t h)
{
	int fd, error;
	unsigned int fc;
	void *buf = (void *)1;
	char res[64];
	coroipc_request_header_t head;
	memset(&head, 0, sizeof(head));
	head.size = sizeof(head);
	head.id = CMD_PLAIN;
	struct iovec iov = { &head, sizeof(head) };
	struct iovec parts[3] = { { &head, 4 }, { NULL, 0 }, { (char *)&head + 4, sizeof(head) - 4 } };
	struct iovec null_base = { NULL, sizeof(head) };

	EXPECT(coroipcc_fd_get(h, NULL), CS_ERR_INVALID_PARAM);
	/* Typed pointers not aligned for their type: refused. */
	union { int fd; char bytes[2 * sizeof(int)]; } raw_fd;
	EXPECT(coroipcc_fd_get(h, (int *)(void *)(raw_fd.bytes + 1)), CS_ERR_INVALID_PARAM);
	union { struct iovec v; char bytes[sizeof(struct iovec) + 8]; } raw_iov;
	memcpy(raw_iov.bytes + 1, &iov, sizeof(iov));
	EXPECT(coroipcc_msg_send_reply_receive(h, (const struct iovec *)(void *)(raw_iov.bytes + 1), 1, res,
					       sizeof(res)),
	       CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_dispatch_flow_control_get(h, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_dispatch_get(h, NULL, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, NULL, 1, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 0, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 100000, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &null_base, 1, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 1, NULL, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 1, res, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_get(h, &iov, 1, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_get(h, NULL, 1, &buf), CS_ERR_INVALID_PARAM);
	CHECK(buf == NULL, "in_buf_get clears its out-pointer on failure");
	buf = (void *)1;
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_get(h, &iov, 0, &buf), CS_ERR_INVALID_PARAM);
	CHECK(buf == NULL, "in_buf_get clears its out-pointer on failure");
	/* Headers that lie (the header is 16 bytes): a size smaller than the bytes given,
	 * or a size above request_size. A larger size within request_size is padded with
	 * zeros to it (corosync's cpg_membership_get sends a bare header claiming its
	 * whole request). */
	EXPECT(request(h, 17, 0, 16, &error), CS_OK);
	EXPECT(request(h, REQ_SIZE, 0, 16, &error), CS_OK);
	EXPECT(request(h, REQ_SIZE + 1, 0, 16, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 15, 0, 16, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 0, 0, 16, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, -1, 0, 16, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, INT_MAX, 0, 16, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 16, -1, 16, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 16, 65536, 16, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 8, 0, 8, NULL), CS_ERR_INVALID_PARAM); /* shorter than a header */
	EXPECT(request(h, 12, 0, 12, NULL), CS_ERR_INVALID_PARAM); /* the old 12-byte size */
	/* Larger than the request_size given at connect (as corosync's); exactly it is
	 * fine. */
	EXPECT(request(h, REQ_SIZE + 8, 0, REQ_SIZE + 8, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, REQ_SIZE, 0, REQ_SIZE, &error), CS_OK);
	CHECK(error == CS_OK, "a request of request_size: %d", error);
	/* No handler for command 9: the library answers a bare header whose error is
	 * CS_ERR_INVALID_PARAM, as corosync's coroipcs (the call itself succeeds; the old
	 * libcoroipc API returned CS_ERR_INVALID_PARAM). */
	EXPECT(request(h, 16, 9, 16, &error), CS_OK);
	CHECK(error == CS_ERR_INVALID_PARAM, "no handler: header error %d", error);
	/* Admission control: 0 is "overloaded", CS_ERR_TRY_AGAIN from the call as
	 * corosync's coroipcc; -1 is "invalid", a header with CS_ERR_INVALID_PARAM. */
	int calls = atomic_load(&allowed_calls);
	int gets = atomic_load(&handler_gets);
	EXPECT(request(h, 16, CMD_BUSY, 16, NULL), CS_ERR_TRY_AGAIN);
	EXPECT(request(h, 16, CMD_INVALID, 16, &error), CS_OK);
	CHECK(error == CS_ERR_INVALID_PARAM, "sending_allowed -1: header error %d", error);
	coroipc_request_header_t busy = head;
	busy.id = CMD_BUSY;
	struct iovec busy_iov = { &busy, sizeof(busy) };
	void *in_buf = NULL;
	/* _in_buf_get hands the refusal over as corosync's did: the header says so. */
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_get(h, &busy_iov, 1, &in_buf), CS_OK);
	CHECK(in_buf != NULL && ((const coroipc_response_header_t *)in_buf)->error == CS_ERR_TRY_AGAIN &&
	      ((const coroipc_response_header_t *)in_buf)->size == (int)sizeof(coroipc_response_header_t),
	      "in_buf_get of a refused request");
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_put(h), CS_OK);
	CHECK(atomic_load(&allowed_calls) == calls + 3, "sending_allowed asked for each");
	CHECK(atomic_load(&handler_gets) == gets, "handler_fn_get asked %d times for refused requests",
	      atomic_load(&handler_gets) - gets);
	EXPECT(ping(h), CS_OK);
	CHECK(atomic_load(&handler_gets) == gets + 1, "handler_fn_get asked once for an admitted request");
	/* Still usable; a header split across iovecs with an empty one between. */
	EXPECT(ping(h), CS_OK);
	EXPECT(coroipcc_msg_send_reply_receive(h, parts, 3, res, sizeof(res)), CS_OK);
	/* A res_len shorter than the response: cut (the old API said CS_ERR_TOO_BIG). */
	memset(res, 0x5a, sizeof(res));
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 1, res, 4), CS_OK);
	int size_copied = 0;
	memcpy(&size_copied, res, sizeof(size_copied));
	CHECK(size_copied == (int)sizeof(coroipc_response_header_t) && res[4] == 0x5a, "4 bytes copied");
	/* A longer res_len: the rest zeroed. */
	memset(res, 0x5a, sizeof(res));
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 1, res, sizeof(res)), CS_OK);
	for (size_t i = sizeof(coroipc_response_header_t); i < sizeof(res); i++)
		CHECK(res[i] == 0, "byte %zu zeroed", i);
	EXPECT(coroipcc_fd_get(h, &fd), CS_OK);
	EXPECT(coroipcc_dispatch_flow_control_get(h, &fc), CS_OK);
	CHECK(fc == 0, "no flow control");
	/* Releasing with nothing held is fine, twice too. */
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_put(h), CS_OK);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_put(h), CS_OK);
	EXPECT(coroipcc_dispatch_put(h), CS_OK);
	/* No dispatch message: CS_ERR_TRY_AGAIN and NULL (the old API said CS_OK). */
	buf = (void *)1;
	EXPECT(coroipcc_dispatch_get(h, &buf, 0), CS_ERR_TRY_AGAIN);
	CHECK(buf == NULL, "no message");
	buf = (void *)1;
	long long t0 = now_ms();
	EXPECT(coroipcc_dispatch_get(h, &buf, 50), CS_ERR_TRY_AGAIN);
	CHECK(buf == NULL && now_ms() - t0 >= 40, "waited the timeout");
}

static void zcb_misuse(const char *name, hdb_handle_t h)
{
	hdb_handle_t other = connect_to(name, 1);
	void *a = (void *)1, *b = NULL, *foreign = NULL;
	union { coroipc_request_header_t head; char bytes[64]; } stack;
	char res[64];
	int error;

	EXPECT(coroipcc_zcb_alloc(h, NULL, 8, 16), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_alloc(h, &a, 0, 0), CS_ERR_INVALID_PARAM);
	CHECK(a == NULL, "zcb_alloc clears its out-pointer on failure");
	EXPECT(coroipcc_zcb_alloc(h, &a, REQ_SIZE, 16), CS_ERR_INVALID_PARAM); /* above request_size */
	EXPECT(coroipcc_zcb_alloc(h, &a, SIZE_MAX, 16), CS_ERR_INVALID_PARAM); /* overflows */
	EXPECT(coroipcc_zcb_alloc(0, &a, 8, 16), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_zcb_alloc(h, &a, 8, 16), CS_OK);
	CHECK(a != NULL && ((uintptr_t)a & 7) == 0, "zcb 8-aligned");
	for (int i = 0; i < 24; i++)
		CHECK(((const char *)a)[i] == 0, "zcb byte %d zeroed", i);
	EXPECT(coroipcc_zcb_alloc(h, &b, REQ_SIZE - 16, 16), CS_OK); /* exactly request_size */
	EXPECT(coroipcc_zcb_alloc(other, &foreign, 8, 16), CS_OK);
	coroipc_request_header_t *req = a;
	req->size = 24;
	req->id = CMD_PLAIN;
	memcpy(foreign, a, 24);
	memcpy(&stack, a, 24);

	/* Sent right. */
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_OK);
	CHECK(((const coroipc_response_header_t *)(const void *)res)->error == CS_OK, "zcb response");
	EXPECT(coroipcc_zcb_msg_send_reply_receive(other, foreign, res, sizeof(res)), CS_OK);
	/* Not a zcb buffer of this handle: the stack, NULL, inside one, another handle's. */
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, &stack, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, NULL, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, (char *)a + 8, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, foreign, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(other, a, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, NULL, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(0, a, res, sizeof(res)), CS_ERR_BAD_HANDLE);
	/* A header that says more than the buffer holds, less than a header, negative, or
	 * an id out of range; a size smaller than the buffer is fine (that many sent). */
	req->size = 25;
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	req->size = 1 << 20;
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	req->size = -1;
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	req->size = 8;
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	req->size = 24;
	req->id = 70000;
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	req->id = CMD_BUSY;
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_ERR_TRY_AGAIN);
	req->id = CMD_PLAIN;
	req->size = 16;
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_OK);
	/* The largest: request_size bytes. */
	((coroipc_request_header_t *)b)->size = REQ_SIZE;
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, b, res, sizeof(res)), CS_OK);
	/* A short res_len: cut, as msg_send_reply_receive. */
	memset(res, 0x5a, sizeof(res));
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, 8), CS_OK);
	CHECK(res[8] == 0x5a, "nothing past res_len");

	/* Freeing what is not a zcb buffer of the handle frees nothing. */
	EXPECT(coroipcc_zcb_free(h, &stack), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_free(h, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_free(h, (char *)a + 8), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_free(h, foreign), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_free(other, a), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_zcb_free(0, a), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_OK); /* still a's */
	EXPECT(coroipcc_zcb_free(h, a), CS_OK);
	EXPECT(coroipcc_zcb_free(h, a), CS_ERR_INVALID_PARAM); /* double free */
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, a, res, sizeof(res)), CS_ERR_INVALID_PARAM); /* freed */
	/* `foreign` is left to other's disconnect, `b` to h's (the leak check sees both). */
	EXPECT(coroipcc_service_disconnect(other), CS_OK);
	EXPECT(coroipcc_zcb_free(other, foreign), CS_ERR_BAD_HANDLE);
	EXPECT(request(h, 16, CMD_PLAIN, 16, &error), CS_OK);
}

/* Whether `buf` is message `i` of EVENTS, intact. */
static int is_event(const void *buf, size_t i)
{
	const coroipc_response_header_t *h = buf;
	const unsigned char *bytes = buf;
	if (buf == NULL || h->size != EVENTS[i].size || h->id != 7 || h->error != CS_OK)
		return 0;
	for (int at = (int)sizeof(*h); at < EVENTS[i].size; at++)
		if (bytes[at] != EVENTS[i].fill)
			return 0;
	return 1;
}

/* Disconnects `h` and waits for its exit_fn (so later counts of exits are not
 * disturbed). */
static void disconnect_and_wait(hdb_handle_t h)
{
	int exited = atomic_load(&exits);
	EXPECT(coroipcc_service_disconnect(h), CS_OK);
	wait_exits(exited + 1);
}

/* A nested coroipcc_dispatch_get on the thread holding a dispatch message (a
 * callback of cpg_dispatch(CS_DISPATCH_ALL) calling cpg_dispatch(CS_DISPATCH_ONE)):
 * the outer message stays valid, byte for byte, until its own put, whether the inner
 * one is smaller (it overwrote the outer's buffer) or larger (it freed it: ASan reports
 * the read); each put releases the innermost one held (corosync's outer pointer stayed
 * valid until its put). */
static void nested_dispatch_get(const char *name)
{
	hdb_handle_t h = connect_to(name, 1);
	void *outer = NULL, *inner = NULL;
	EXPECT(request(h, 16, CMD_EVENTS, 16, NULL), CS_OK);
	EXPECT(coroipcc_dispatch_get(h, &outer, 5000), CS_OK);
	CHECK(is_event(outer, 0), "the outer message");
	for (size_t i = 1; i < N_EVENTS; i++) {
		EXPECT(coroipcc_dispatch_get(h, &inner, 5000), CS_OK);
		CHECK(inner != outer && is_event(inner, i), "nested message %zu", i);
		CHECK(is_event(outer, 0), "the outer message while nested message %zu is held", i);
		EXPECT(coroipcc_dispatch_put(h), CS_OK); /* the inner one */
		CHECK(is_event(outer, 0), "the outer message after nested message %zu was put", i);
	}
	/* A nested get that finds nothing releases nothing either. */
	inner = (void *)1;
	EXPECT(coroipcc_dispatch_get(h, &inner, 0), CS_ERR_TRY_AGAIN);
	CHECK(inner == NULL && is_event(outer, 0), "the outer message after an empty nested get");
	EXPECT(coroipcc_dispatch_put(h), CS_OK); /* the outer one */
	EXPECT(coroipcc_dispatch_put(h), CS_OK); /* none held: nothing happens */
	/* Nothing held: the next get is not nested (the same round again). */
	EXPECT(request(h, 16, CMD_EVENTS, 16, NULL), CS_OK);
	for (size_t i = 0; i < N_EVENTS; i++) {
		EXPECT(coroipcc_dispatch_get(h, &inner, 5000), CS_OK);
		CHECK(is_event(inner, i), "message %zu of the second round", i);
		EXPECT(coroipcc_dispatch_put(h), CS_OK);
	}
	disconnect_and_wait(h);
}

struct stray_put {
	hdb_handle_t h;
	cs_error_t put, get;
	void *buf;
};

static void *stray_put_thread(void *arg)
{
	struct stray_put *p = arg;
	p->put = coroipcc_dispatch_put(p->h);
	p->buf = (void *)1;
	p->get = coroipcc_dispatch_get(p->h, &p->buf, 0);
	return NULL;
}

/* coroipcc_dispatch_put from a thread that holds no dispatch message: CS_OK and
 * nothing happens; the other thread's message stays held (a get elsewhere still waits
 * for it) and intact. It used to release it, and the next get overwrote it. */
static void put_from_another_thread(const char *name)
{
	hdb_handle_t h = connect_to(name, 1);
	void *mine = NULL;
	EXPECT(request(h, 16, CMD_EVENTS, 16, NULL), CS_OK);
	EXPECT(coroipcc_dispatch_get(h, &mine, 5000), CS_OK);
	CHECK(is_event(mine, 0), "the held message");
	struct stray_put p = { .h = h };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, stray_put_thread, &p) == 0, "pthread_create");
	CHECK(pthread_join(t, NULL) == 0, "pthread_join");
	EXPECT(p.put, CS_OK);
	CHECK(p.get == CS_ERR_TRY_AGAIN && p.buf == NULL,
	      "another thread's get after its stray put: %d (the message was released)", p.get);
	CHECK(is_event(mine, 0), "the held message after another thread's put");
	EXPECT(coroipcc_dispatch_put(h), CS_OK);
	for (size_t i = 1; i < N_EVENTS; i++) {
		void *buf = NULL;
		EXPECT(coroipcc_dispatch_get(h, &buf, 5000), CS_OK);
		CHECK(is_event(buf, i), "message %zu after the put", i);
		EXPECT(coroipcc_dispatch_put(h), CS_OK);
	}
	disconnect_and_wait(h);
}

/* The peak resident size of this process, in KiB. */
static long peak_rss_kib(void)
{
	struct rusage ru;
	CHECK(getrusage(RUSAGE_SELF, &ru) == 0, "getrusage");
	return ru.ru_maxrss;
}

/* A header claiming a huge size, within an equally huge request_size but above what
 * the server granted (8 MiB rings): refused as too large (CS_ERR_INVALID_PARAM, as a
 * request above request_size) before any copy of that size is made (a zeroed 256 MiB
 * copy came first, and up to 1 GiB could). */
static void request_bounded_by_the_grant(const char *name)
{
	enum { HUGE = 1 << 28 };
	hdb_handle_t big = 0;
	EXPECT(coroipcc_service_connect(name, 1, HUGE, RES_SIZE, DISPATCH_SIZE, &big), CS_OK);
	coroipc_request_header_t head = { .size = HUGE, .id = CMD_PLAIN };
	struct iovec iov = { &head, sizeof(head) };
	char res[64];
	long before = peak_rss_kib();
	EXPECT(coroipcc_msg_send_reply_receive(big, &iov, 1, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	void *zcb = (void *)1;
	EXPECT(coroipcc_zcb_alloc(big, &zcb, HUGE - 16, 16), CS_ERR_INVALID_PARAM);
	CHECK(zcb == NULL, "no zcb buffer beyond the grant");
	long grown = peak_rss_kib() - before;
	CHECK(grown < 64 * 1024, "the refused request grew the peak resident size by %ld KiB", grown);
	EXPECT(ping(big), CS_OK);
	disconnect_and_wait(big);
}

/* A thread's _in_buf_get response is its own: another thread's _in_buf_get on the
 * same handle neither waits for it nor overwrites it (corosync's confdb skips
 * _in_buf_put when an allocation fails). */
struct in_buf_other {
	hdb_handle_t h;
	struct iovec iov;
	cs_error_t got;
	int size;
};

static void *in_buf_other_thread(void *arg)
{
	struct in_buf_other *o = arg;
	void *buf = NULL;
	o->got = coroipcc_msg_send_reply_receive_in_buf_get(o->h, &o->iov, 1, &buf);
	if (o->got == CS_OK)
		o->size = ((const coroipc_response_header_t *)buf)->size;
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_put(o->h), CS_OK);
	return NULL;
}

static void client_in_buf_per_thread(hdb_handle_t h)
{
	coroipc_request_header_t head = { .size = sizeof(head), .id = CMD_PLAIN };
	struct iovec iov = { &head, sizeof(head) };
	void *mine = NULL;
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_get(h, &iov, 1, &mine), CS_OK);
	coroipc_response_header_t copy;
	memcpy(&copy, mine, sizeof(copy));
	/* Held, never put by this thread yet: the other thread gets its own. */
	struct in_buf_other o = { .h = h, .iov = iov, .got = CS_ERR_LIBRARY };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, in_buf_other_thread, &o) == 0, "pthread_create");
	CHECK(pthread_join(t, NULL) == 0, "pthread_join");
	EXPECT(o.got, CS_OK);
	CHECK(o.size == copy.size, "the other thread's response: %d", o.size);
	CHECK(memcmp(mine, &copy, sizeof(copy)) == 0, "this thread's response unchanged");
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_put(h), CS_OK);
}

static void client_misuse_in_handler(hdb_handle_t h)
{
	coroipc_request_header_t head;
	memset(&head, 0, sizeof(head));
	head.size = sizeof(head);
	head.id = CMD_MISUSE;
	struct iovec iov = { &head, sizeof(head) };
	void *res = NULL, *buf = NULL;
	int before = atomic_load(&exits);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_get(h, &iov, 1, &res), CS_OK);
	CHECK(res != NULL && ((coroipc_response_header_t *)res)->size == 24, "the response held");
	CHECK(((uintptr_t)res & 7) == 0, "8-aligned");
	EXPECT(coroipcc_dispatch_get(h, &buf, 5000), CS_OK);
	CHECK(buf != NULL && ((coroipc_response_header_t *)buf)->size == 24, "dispatch message");
	CHECK(atomic_load(&exits) == before, "the refused ipc_exit / service_exit did not disconnect");
	/* Other calls while both are held. */
	EXPECT(ping(h), CS_OK);
	/* Disconnecting while holding them frees them too (checked by the leak check). */
}

static void *dispatch_from_a_thread(void *conn)
{
	for (uint32_t i = 0; i < 100; i++) {
		struct { coroipc_response_header_t h; uint32_t seq; } ev;
		memset(&ev, 0, sizeof(ev));
		ev.h.size = sizeof(ev);
		ev.h.id = 7;
		ev.h.error = CS_OK;
		ev.seq = i;
		int tries = 0;
		/* -1 while the ring and its queue are full: retry for a while. */
		while (coroipcs_dispatch_send(conn, &ev, sizeof(ev)) != 0) {
			CHECK(++tries < 5000, "dispatch_send from a thread keeps failing");
			usleep(1000);
		}
	}
	return NULL;
}

/* Dispatch messages sent from a thread of the daemon other than its loop. */
static void dispatch_from_another_thread(hdb_handle_t h)
{
	pthread_t sender;
	CHECK(pthread_create(&sender, NULL, dispatch_from_a_thread, h_conn) == 0, "thread");
	for (uint32_t i = 0; i < 100; i++) {
		void *buf = NULL;
		EXPECT(coroipcc_dispatch_get(h, &buf, 5000), CS_OK);
		CHECK(buf != NULL, "message %u arrived", i);
		const struct { coroipc_response_header_t h; uint32_t seq; } *ev = buf;
		CHECK(ev->h.size == 32 && ev->seq == i, "message %u in order (%u)", i, ev->seq);
		EXPECT(coroipcc_dispatch_put(h), CS_OK);
	}
	pthread_join(sender, NULL);
}

static void freed_and_foreign(hdb_handle_t h)
{
	void *conn = h_conn;
	coroipc_response_header_t res;
	char out[64];
	int fd;
	unsigned int fc;
	void *buf;
	memset(&res, 0, sizeof(res));
	res.size = sizeof(res);
	res.error = CS_OK;
	struct iovec iov = { &res, sizeof(res) };

	/* Foreign: a connection token as a client handle and the reverse; made-up ones. */
	EXPECT(coroipcc_fd_get((hdb_handle_t)(uintptr_t)conn, &fd), CS_ERR_BAD_HANDLE);
	coroipcs_refcount_inc((void *)(uintptr_t)h); /* ignored */
	CHECK(coroipcs_private_data_get((void *)(uintptr_t)h) == NULL, "a client handle is no conn");
	EXPECT_INT(coroipcs_response_send((void *)(uintptr_t)h, &res, sizeof(res)), -1);
	EXPECT(coroipcc_fd_get(h + 1, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_fd_get(0, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_fd_get(~(hdb_handle_t)0, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_service_disconnect(0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_put(0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_put(0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_get(0, &buf, 0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_flow_control_get(0, &fc), CS_ERR_BAD_HANDLE);
	EXPECT_INT(coroipcs_handler_dispatch(0, 0, (void *)(uintptr_t)12345), -1);

	/* The daemon holds references: the connection outlives the disconnect. */
	coroipcs_refcount_inc(conn);
	coroipcs_refcount_inc(conn);
	int before = atomic_load(&exits);
	EXPECT(coroipcc_service_disconnect(h), CS_OK);
	wait_exits(before + 1);
	/* A context the library took back (poll_dispatch_destroy) is stale. */
	CHECK(atomic_load(&last_destroyed) != NULL, "fds handed back");
	EXPECT_INT(coroipcs_handler_dispatch(0, 0, atomic_load(&last_destroyed)), -1);
	char *priv = coroipcs_private_data_get(conn);
	CHECK(priv != NULL && memcmp(priv, "private", 8) == 0, "private data kept by the references");
	EXPECT_INT(coroipcs_dispatch_send(conn, &res, sizeof(res)), -1); /* the client is gone */
	EXPECT_INT(coroipcs_response_send(conn, &res, sizeof(res)), -1);
	coroipcs_refcount_dec(conn);
	CHECK(coroipcs_private_data_get(conn) == priv, "one reference left");
	coroipcs_refcount_dec(conn); /* the last reference: freed */
	CHECK(coroipcs_private_data_get(conn) == NULL, "freed");
	EXPECT_INT(coroipcs_response_send(conn, &res, sizeof(res)), -1);
	EXPECT_INT(coroipcs_response_iov_send(conn, &iov, 1), -1);
	EXPECT_INT(coroipcs_dispatch_send(conn, &res, sizeof(res)), -1);
	EXPECT_INT(coroipcs_dispatch_iov_send(conn, &iov, 1), -1);
	coroipcs_refcount_inc(conn); /* stale: ignored */
	CHECK(coroipcs_private_data_get(conn) == NULL, "a stale conn stays stale");
	coroipcs_refcount_dec(conn);

	/* The freed client context, in every client function. */
	coroipc_request_header_t head;
	memset(&head, 0, sizeof(head));
	head.size = sizeof(head);
	struct iovec req = { &head, sizeof(head) };
	EXPECT(coroipcc_service_disconnect(h), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_fd_get(h, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_msg_send_reply_receive(h, &req, 1, out, sizeof(out)), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_get(h, &req, 1, &buf), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf_put(h), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_get(h, &buf, 0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_put(h), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_flow_control_get(h, &fc), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_zcb_alloc(h, &buf, 8, 16), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_zcb_free(h, out), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_zcb_msg_send_reply_receive(h, out, out, sizeof(out)), CS_ERR_BAD_HANDLE);
}

/* coroipcs_ipc_service_exit: every client of the service is disconnected; -1 ("call
 * again") until none is left, which references prevent. */
static void service_exit(const char *name)
{
	int before = atomic_load(&exits);
	hdb_handle_t a = connect_to(name, 1);
	hdb_handle_t b = connect_to(name, 1);
	void *held = atomic_load(&last_conn);
	EXPECT(ping(a), CS_OK);
	EXPECT(ping(b), CS_OK);
	coroipcs_refcount_inc(held);
	EXPECT_INT(coroipcs_ipc_service_exit(2), 0); /* none of service 2 */
	int r = coroipcs_ipc_service_exit(1);
	wait_exits(before + 2);
	for (int i = 0; i < 50 && r == 0; i++) /* (0 would be wrong: one is held) */
		r = coroipcs_ipc_service_exit(1);
	EXPECT_INT(r, -1);
	CHECK(coroipcs_private_data_get(held) != NULL, "the held connection's data");
	coroipcs_refcount_dec(held);
	for (int i = 0; i < 500 && r != 0; i++) {
		r = coroipcs_ipc_service_exit(1);
		if (r != 0)
			usleep(10000);
	}
	EXPECT_INT(r, 0);
	CHECK(atomic_load(&exits) == before + 2, "each exit_fn ran once");
	EXPECT(ping(a), CS_ERR_LIBRARY);
	EXPECT(ping(b), CS_ERR_LIBRARY);
	EXPECT(coroipcc_service_disconnect(a), CS_OK);
	EXPECT(coroipcc_service_disconnect(b), CS_OK);
	/* New clients are still welcome. */
	hdb_handle_t c = connect_to(name, 1);
	EXPECT(ping(c), CS_OK);
	EXPECT(coroipcc_service_disconnect(c), CS_OK);
}

/* No usable socket name: the state has a fatal_error, which must be told (the header:
 * "On failure (NULL, ...) it calls fatal_error"; coroipcs_ipc_init returns void, so a
 * daemon has no other way to learn that it serves nothing). Checked last, after the
 * server is gone again. */
static void init_without_a_name(void)
{
	int before = atomic_load(&fatals);
	struct coroipcs_init_state state = full_state(NULL);
	state.handler_fn_get = handler_get;
	coroipcs_ipc_init(&state);
	expect_fatals(before + 1, "coroipcs_ipc_init with socket_name NULL");
	state.socket_name = "";
	coroipcs_ipc_init(&state);
	expect_fatals(before + 2, "coroipcs_ipc_init with socket_name \"\"");
	struct coroipcs_init_state_v2 v2 = server_state(NULL);
	coroipcs_ipc_init_v2(&v2);
	expect_fatals(before + 3, "coroipcs_ipc_init_v2 with socket_name NULL");
	CHECK(watched_count() == 0, "no fd left behind by the failed inits");
	EXPECT_INT(coroipcs_handler_dispatch(0, 0, NULL), -1); /* not started */
}

static pthread_t start_server(const char *name)
{
	struct coroipcs_init_state_v2 state = server_state(name);
	pthread_t thread;
	int before = atomic_load(&fatals);
	coroipcs_ipc_init_v2(&state);
	expect_fatals(before, "coroipcs_ipc_init_v2");
	CHECK(watched_count() > 0, "the listener handed to poll_accept_add");
	CHECK(pthread_create(&thread, NULL, server_loop, NULL) == 0, "thread");
	return thread;
}

static void stop_server(pthread_t thread)
{
	atomic_store(&stop, 1);
	pthread_join(thread, NULL);
	coroipcs_ipc_exit();
	CHECK(watched_count() == 0, "every fd handed back at exit (%d left)", watched_count());
	CHECK(atomic_load(&bad_destroys) == 0, "%d fds destroyed that were never added",
	      atomic_load(&bad_destroys));
}

static int everything(const char *name)
{
	pthread_t thread;
	hdb_handle_t h = 0;

	server_before_init();
	int fds_before = count_fds();
	thread = start_server(name);
	/* Already started, v2 or v1, same name or not: fatal_error; the running server is
	 * not disturbed. */
	struct coroipcs_init_state_v2 again = server_state(name);
	coroipcs_ipc_init_v2(&again);
	expect_fatals(5, "a second coroipcs_ipc_init_v2");
	struct coroipcs_init_state v1 = full_state("abuse-another-name");
	v1.handler_fn_get = handler_get;
	coroipcs_ipc_init(&v1);
	expect_fatals(6, "coroipcs_ipc_init while started");

	client_connects(name);
	h = connect_to(name, 1);
	h_conn = atomic_load(&last_conn);
	client_arguments(h);
	client_in_buf_per_thread(h);
	zcb_misuse(name, h);
	request_bounded_by_the_grant(name);
	client_misuse_in_handler(h);
	expect_fatals(7, "after the handler's misuse");
	dispatch_from_another_thread(h);
	nested_dispatch_get(name);
	put_from_another_thread(name);
	freed_and_foreign(h);
	service_exit(name);

	/* A client still connected, holding a zcb buffer, when the server exits. */
	h = connect_to(name, 1);
	void *zcb = NULL;
	EXPECT(coroipcc_zcb_alloc(h, &zcb, 8, 16), CS_OK);
	stop_server(thread);
	coroipcs_ipc_exit(); /* not running: nothing happens */
	EXPECT_INT(coroipcs_handler_accept(0, 0, NULL), 0);
	EXPECT_INT(coroipcs_handler_dispatch(0, 0, NULL), -1);
	EXPECT(ping(h), CS_ERR_LIBRARY); /* the server is gone */
	void *buf = (void *)1;
	EXPECT(coroipcc_dispatch_get(h, &buf, 0), CS_ERR_LIBRARY);
	CHECK(buf == NULL, "no message from a dead server");
	EXPECT(coroipcc_service_disconnect(h), CS_OK);
	CHECK(count_fds() == fds_before, "every descriptor closed: %d open, %d before",
	      count_fds(), fds_before);
	CHECK(atomic_load(&allocated) > 0 && atomic_load(&allocated) == atomic_load(&freed),
	      "private data through the daemon's allocator: %d allocated, %d freed",
	      atomic_load(&allocated), atomic_load(&freed));
	CHECK(atomic_load(&stats_created) > 0 && atomic_load(&stats_live) == 0,
	      "statistics handles: %d created, %d not destroyed", atomic_load(&stats_created),
	      atomic_load(&stats_live));
	CHECK(atomic_load(&allowed_calls) == atomic_load(&allowed_releases),
	      "sending_allowed %d times, released %d", atomic_load(&allowed_calls),
	      atomic_load(&allowed_releases));
	CHECK(atomic_load(&serialize_held) == 0, "serialize_lock released");
	expect_fatals(7, "at the end");
	init_without_a_name(); /* last: see there */
	printf("ok abuse\n");
	return 0;
}

/* ---- coroipcc_service_disconnect while another thread of the client waits. ---- */

static const char *volatile watchdog_what = "";

static void on_alarm(int sig)
{
	static const char head[] = "FAILED: blocked for 10 s: ";
	(void)sig;
	if (write(2, head, sizeof(head) - 1) < 0 || write(2, watchdog_what, strlen(watchdog_what)) < 0 ||
	    write(2, "\n", 1) < 0)
		_exit(3);
	_exit(3);
}

struct waiter {
	hdb_handle_t h;
	int in_dispatch;
	cs_error_t result;
	void *buf;
	long long took_ms;
};

static void *wait_on_handle(void *p)
{
	struct waiter *w = p;
	long long t0 = now_ms();
	if (w->in_dispatch) {
		w->buf = (void *)1;
		w->result = coroipcc_dispatch_get(w->h, &w->buf, 1500);
	} else {
		w->result = request(w->h, 16, CMD_HANG, 16, NULL);
	}
	w->took_ms = now_ms() - t0;
	return NULL;
}

static void disconnect_while_waiting(const char *name, int in_dispatch)
{
	struct waiter w = { connect_to(name, 1), in_dispatch, CS_OK, NULL, 0 };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, wait_on_handle, &w) == 0, "thread");
	usleep(200000); /* it waits by now */
	watchdog_what = in_dispatch ? "coroipcc_service_disconnect while another thread waits in dispatch_get"
				    : "coroipcc_service_disconnect while another thread waits for a response";
	alarm(10);
	long long t0 = now_ms();
	EXPECT(coroipcc_service_disconnect(w.h), CS_OK);
	CHECK(now_ms() - t0 < 1000, "disconnect took %lld ms", now_ms() - t0);
	watchdog_what = "the waiting thread after the disconnect";
	pthread_join(t, NULL);
	alarm(0);
	if (in_dispatch) {
		/* Its wait ends (here: the timeout), then it sees the handle gone. */
		CHECK(w.result == CS_ERR_BAD_HANDLE && w.buf == NULL, "dispatch_get: %d", w.result);
		CHECK(w.took_ms < 5000, "dispatch_get returned after %lld ms", w.took_ms);
	} else {
		/* corosync's coroipcc: the wait sees the socket shut down, CS_ERR_LIBRARY;
		 * libcoroipc's header: CS_ERR_BAD_HANDLE when the wait ends. */
		CHECK(w.result == CS_ERR_BAD_HANDLE || w.result == CS_ERR_LIBRARY, "request: %d", w.result);
	}
	EXPECT(coroipcc_service_disconnect(w.h), CS_ERR_BAD_HANDLE);
}

struct second {
	hdb_handle_t h;
	cs_error_t now, later;
	long long took_ms;
};

static void *second_dispatcher(void *p)
{
	struct second *s = p;
	void *b = NULL;
	long long t0 = now_ms();
	s->now = coroipcc_dispatch_get(s->h, &b, 0);
	s->later = coroipcc_dispatch_get(s->h, &b, 100);
	s->took_ms = now_ms() - t0;
	return NULL;
}

/* While one thread holds a dispatch message, another thread's dispatch_get waits for
 * it only within its own timeout (it used to wait until the put, even with 0). */
static void second_dispatcher_within_its_timeout(const char *name)
{
	hdb_handle_t h = connect_to(name, 1);
	client_misuse_in_handler(h); /* holds a dispatch message (and a response) */
	struct second s = { h, CS_OK, CS_OK, 0 };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, second_dispatcher, &s) == 0, "thread");
	watchdog_what = "dispatch_get while another thread holds a dispatch message";
	alarm(10);
	pthread_join(t, NULL);
	alarm(0);
	CHECK(s.now == CS_ERR_TRY_AGAIN && s.later == CS_ERR_TRY_AGAIN, "dispatch_get: %d, %d", s.now,
	      s.later);
	CHECK(s.took_ms < 5000, "the second dispatch_get took %lld ms", s.took_ms);
	EXPECT(coroipcc_dispatch_put(h), CS_OK);
	EXPECT(coroipcc_service_disconnect(h), CS_OK);
}

/* CPU time this process has used, in ms (user + system, every thread). */
static long long cpu_ms(void)
{
	struct timespec ts;
	CHECK(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0, "clock_gettime");
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct dispatcher {
	hdb_handle_t h;
	cs_error_t result;
	int size;
};

/* Gets one dispatch message, holds it a moment, puts it. */
static void *dispatch_one(void *p)
{
	struct dispatcher *d = p;
	void *b = NULL;
	d->result = coroipcc_dispatch_get(d->h, &b, 5000);
	if (d->result == CS_OK) {
		d->size = ((coroipc_response_header_t *)b)->size;
		usleep(20000);
		EXPECT(coroipcc_dispatch_put(d->h), CS_OK);
	}
	return NULL;
}

/* While another thread waits for a response that never comes, the handle's dispatch
 * side goes on: coroipcc_dispatch_get returns within its own timeout, fd_get and
 * flow_control_get at once, and a dispatch message sent meanwhile is delivered
 * (corosync's coroipcc took its mutex only in the request calls; libcoroipc's requests
 * held the context's lock for their whole wait: review of 2026-12-08). */
static void dispatch_beside_a_request(const char *name)
{
	struct waiter w = { connect_to(name, 1), 0, CS_OK, NULL, 0 };
	EXPECT(ping(w.h), CS_OK); /* its init_fn has run: last_conn is its connection */
	void *conn = atomic_load(&last_conn);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, wait_on_handle, &w) == 0, "thread");
	usleep(200000); /* it waits for its response by now */
	watchdog_what = "the dispatch side of a handle while another thread waits for a response";
	alarm(10);
	void *b = (void *)1;
	long long t0 = now_ms();
	EXPECT(coroipcc_dispatch_get(w.h, &b, 0), CS_ERR_TRY_AGAIN);
	CHECK(b == NULL, "no dispatch message yet");
	EXPECT(coroipcc_dispatch_get(w.h, &b, 100), CS_ERR_TRY_AGAIN);
	int fd = -1;
	EXPECT(coroipcc_fd_get(w.h, &fd), CS_OK);
	CHECK(fd >= 0, "fd %d", fd);
	unsigned int flow = 7;
	EXPECT(coroipcc_dispatch_flow_control_get(w.h, &flow), CS_OK);
	CHECK(flow == 0, "flow control %u", flow);
	CHECK(now_ms() - t0 < 5000, "the looks took %lld ms", now_ms() - t0);
	union { coroipc_response_header_t h; unsigned char bytes[48]; } ev;
	memset(ev.bytes, 0x44, sizeof(ev.bytes));
	ev.h.size = sizeof(ev.bytes);
	ev.h.id = 7;
	ev.h.error = CS_OK;
	EXPECT_INT(coroipcs_dispatch_send(conn, &ev, sizeof(ev.bytes)), 0);
	EXPECT(coroipcc_dispatch_get(w.h, &b, 5000), CS_OK);
	CHECK(b != NULL && memcmp(b, &ev, sizeof(ev.bytes)) == 0, "the dispatch message, intact");
	EXPECT(coroipcc_dispatch_put(w.h), CS_OK);
	/* Two dispatchers waiting beside the request do not spin, and each gets one of two
	 * messages sent later; the one that comes second waits for the first's put. */
	struct dispatcher d[2] = { { w.h, CS_OK, 0 }, { w.h, CS_OK, 0 } };
	pthread_t dt[2];
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&dt[i], NULL, dispatch_one, &d[i]) == 0, "thread");
	usleep(100000);
	long long cpu0 = cpu_ms();
	usleep(300000);
	long long spent = cpu_ms() - cpu0;
	CHECK(spent < 150, "two waiting dispatchers and a waiting request: %lld ms of CPU in 300 ms",
	      spent);
	for (int i = 0; i < 2; i++)
		EXPECT_INT(coroipcs_dispatch_send(conn, &ev, sizeof(ev.bytes)), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(dt[i], NULL);
		CHECK(d[i].result == CS_OK && d[i].size == (int)sizeof(ev.bytes), "dispatcher %d: %d, size %d",
		      i, d[i].result, d[i].size);
	}
	/* A poll loop beside the waiting request (poll the fd, then dispatch_get with 0, as
	 * cpg_dispatch(CS_DISPATCH_ALL) after a poll): it does not spin (the request's
	 * waits make the fd read ready, and a get that found the client out at once left
	 * it so: review of 2026-12-08), and it gets a message sent meanwhile. */
	int calls = 0, got = 0;
	long long cpu1 = cpu_ms(), t1 = now_ms();
	while (now_ms() - t1 < 300) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		CHECK(poll(&pfd, 1, 50) >= 0, "poll");
		cs_error_t r = coroipcc_dispatch_get(w.h, &b, 0);
		calls++;
		if (r == CS_OK) {
			got++;
			CHECK(memcmp(b, &ev, sizeof(ev.bytes)) == 0, "the polled message, intact");
			EXPECT(coroipcc_dispatch_put(w.h), CS_OK);
		} else {
			CHECK(r == CS_ERR_TRY_AGAIN && b == NULL, "dispatch_get: %d", r);
		}
		if (calls == 3)
			EXPECT_INT(coroipcs_dispatch_send(conn, &ev, sizeof(ev.bytes)), 0);
	}
	long long loop_cpu = cpu_ms() - cpu1;
	CHECK(got == 1, "the poll loop got %d messages", got);
	CHECK(calls < 200 && loop_cpu < 150, "the poll loop: %d calls, %lld ms of CPU in 300 ms", calls,
	      loop_cpu);
	alarm(0);
	EXPECT(coroipcc_service_disconnect(w.h), CS_OK);
	watchdog_what = "the waiting request after the disconnect";
	alarm(10);
	pthread_join(t, NULL);
	alarm(0);
	CHECK(w.result == CS_ERR_BAD_HANDLE || w.result == CS_ERR_LIBRARY, "request: %d", w.result);
}

static int waiting(const char *name)
{
	signal(SIGALRM, on_alarm);
	pthread_t thread = start_server(name);
	disconnect_while_waiting(name, 1);
	disconnect_while_waiting(name, 0);
	second_dispatcher_within_its_timeout(name);
	dispatch_beside_a_request(name);
	hdb_handle_t h = connect_to(name, 1);
	EXPECT(ping(h), CS_OK);
	EXPECT(coroipcc_service_disconnect(h), CS_OK);
	stop_server(thread);
	printf("ok waiting\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2)
		return everything(argv[1]);
	if (argc == 3 && strcmp(argv[2], "waiting") == 0)
		return waiting(argv[1]);
	fprintf(stderr, "usage: %s SOCKET_NAME [waiting]\n", argv[0]);
	return 2;
}
