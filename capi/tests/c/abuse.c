/* Feeds every libcoroipc function NULLs, zero lengths, headers that lie about their
 * size, out-of-range ids, made-up, foreign and freed handles, and re-entry from the
 * server's own callbacks: each must return its error (never crash), and nothing may
 * leak (run under ASan/LSan by the tests). Also: private data through the daemon's
 * allocator (every allocation freed), no descriptor left open, dispatch sent from a
 * thread other than the loop.
 *
 *   abuse SOCKET_NAME
 *
 * A server (own poll loop on a thread) and a client in one process. Prints "ok abuse".
 */
#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coroipcc.h"
#include "coroipcs.h"

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

#define MAX_WATCHED 256
static struct { int fd; void *context; int accept; } watched[MAX_WATCHED];
static int n_watched;
static atomic_int stop;
static void *_Atomic last_conn;
static atomic_int exited;

static int poll_accept_add(int fd)
{
	watched[n_watched].fd = fd;
	watched[n_watched].context = NULL;
	watched[n_watched++].accept = 1;
	return 0;
}

static int poll_dispatch_add(int fd, void *context)
{
	if (n_watched == MAX_WATCHED)
		return -1;
	watched[n_watched].fd = fd;
	watched[n_watched].context = context;
	watched[n_watched++].accept = 0;
	return 0;
}

static void *_Atomic last_destroyed;

static int poll_dispatch_destroy(int fd, void *context)
{
	if (context != NULL)
		atomic_store(&last_destroyed, context);
	for (int i = 0; i < n_watched; i++)
		if (watched[i].fd == fd && watched[i].context == context) {
			watched[i] = watched[--n_watched];
			return 0;
		}
	return -1;
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
static int available(unsigned int service) { return service == 1; }

static int init_fn(void *conn)
{
	atomic_store(&last_conn, conn);
	return 0;
}

static int exit_fn(void *conn)
{
	(void)conn;
	atomic_store(&exited, 1);
	return 0;
}

static coroipcs_init_fn_lvalue init_get(unsigned int s) { (void)s; return init_fn; }
static coroipcs_exit_fn_lvalue exit_get(unsigned int s) { (void)s; return exit_fn; }

static void respond_ok(void *conn)
{
	coroipc_response_header_t res = { sizeof(res), 0, CS_OK };
	EXPECT(coroipcs_response_send(conn, &res, sizeof(res)), CS_OK);
}

/* Command 0: answers an empty response. */
static void plain(void *conn, const void *msg)
{
	(void)msg;
	respond_ok(conn);
}

/* Command 1: misuse of the server functions from inside a handler. */
static void misuse(void *conn, const void *msg)
{
	const coroipc_request_header_t *req = msg;
	coroipc_response_header_t res = { sizeof(res), 0, CS_OK };
	coroipc_response_header_t lie = { sizeof(res) + 1, 0, CS_OK };
	struct iovec iov = { &res, sizeof(res) };
	struct iovec bad_iov = { NULL, 12 };
	struct coroipcs_init_state state = { .socket_name = "x" };

	CHECK(req->size == (int)sizeof(*req) && req->id == 1, "the header the client sent");
	CHECK(((uintptr_t)msg & 7) == 0, "msg is 8-aligned");
	/* Re-entering the server from its own callback. */
	EXPECT(coroipcs_handler_accept(0, 0, NULL), CS_ERR_BUSY);
	EXPECT(coroipcs_handler_dispatch(0, 0, NULL), CS_ERR_BUSY);
	EXPECT(coroipcs_ipc_exit(), CS_ERR_BUSY);
	state.poll_accept_add = poll_accept_add;
	state.poll_dispatch_add = poll_dispatch_add;
	state.poll_dispatch_destroy = poll_dispatch_destroy;
	EXPECT(coroipcs_ipc_init(&state), CS_ERR_BUSY);
	/* Responses and dispatch messages that are NULL, empty, short or lying. */
	EXPECT(coroipcs_response_send(conn, NULL, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_response_send(conn, &res, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_response_send(conn, &res, 8), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_response_send(conn, &lie, sizeof(lie)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_response_iov_send(conn, NULL, 1), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_response_iov_send(conn, &iov, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_response_iov_send(conn, &bad_iov, 1), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_dispatch_send(conn, NULL, 12), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_dispatch_send(conn, &res, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_dispatch_send(conn, &lie, sizeof(lie)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_dispatch_iov_send(conn, NULL, 1), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_dispatch_iov_send(conn, &iov, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_refcount_dec(conn), CS_ERR_INVALID_PARAM); /* no reference held */
	CHECK(coroipcs_private_data_get(conn) != NULL, "private data");
	/* A dispatch message through the iov path, then the real answer; a second answer
	 * has no request left. */
	EXPECT(coroipcs_dispatch_iov_send(conn, &iov, 1), CS_OK);
	EXPECT(coroipcs_response_iov_send(conn, &iov, 1), CS_OK);
	EXPECT(coroipcs_response_send(conn, &res, sizeof(res)), CS_ERR_NOT_EXIST);
}

static coroipcs_handler_fn_lvalue handler_get(unsigned int s, unsigned int id)
{
	(void)s;
	return id == 0 ? plain : id == 1 ? misuse : NULL;
}

static void *server_loop(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		struct pollfd fds[MAX_WATCHED];
		int n = n_watched;
		void *ctx[MAX_WATCHED];
		int acc[MAX_WATCHED];
		for (int i = 0; i < n; i++) {
			fds[i].fd = watched[i].fd;
			fds[i].events = POLLIN;
			fds[i].revents = 0;
			ctx[i] = watched[i].context;
			acc[i] = watched[i].accept;
		}
		if (poll(fds, (nfds_t)n, 20) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (!fds[i].revents)
				continue;
			if (acc[i]) {
				EXPECT(coroipcs_handler_accept(fds[i].fd, fds[i].revents, NULL), CS_OK);
				continue;
			}
			/* The context may have been handed back earlier in this turn. */
			cs_error_t err = coroipcs_handler_dispatch(fds[i].fd, fds[i].revents, ctx[i]);
			CHECK(err == CS_OK || err == CS_ERR_BAD_HANDLE, "handler_dispatch: %d", err);
		}
	}
	return NULL;
}

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

static cs_error_t request(hdb_handle_t h, int size, int id, size_t real)
{
	char buf[64] = { 0 };
	coroipc_request_header_t head = { size, id };
	char res[64];
	memcpy(buf, &head, sizeof(head));
	struct iovec iov = { buf, real };
	return coroipcc_msg_send_reply_receive(h, &iov, 1, res, sizeof(res));
}

static void server_before_init(void)
{
	struct coroipcs_init_state state = { .socket_name = "x" };
	char msg[16] = { 0 };
	EXPECT(coroipcs_ipc_init(NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_ipc_init(&state), CS_ERR_INVALID_PARAM); /* no poll callbacks */
	state.poll_accept_add = poll_accept_add;
	state.poll_dispatch_add = poll_dispatch_add;
	state.poll_dispatch_destroy = poll_dispatch_destroy;
	state.socket_name = NULL;
	EXPECT(coroipcs_ipc_init(&state), CS_ERR_INVALID_PARAM);
	state.socket_name = "";
	EXPECT(coroipcs_ipc_init(&state), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcs_handler_accept(0, 0, NULL), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_handler_dispatch(0, 0, NULL), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_ipc_exit(), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_response_send(NULL, msg, sizeof(msg)), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_dispatch_send((void *)0x1234, msg, sizeof(msg)), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_refcount_inc(NULL), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_refcount_dec((void *)-1), CS_ERR_BAD_HANDLE);
	CHECK(coroipcs_private_data_get(NULL) == NULL, "private data of NULL");
	CHECK(n_watched == 0, "no fd left behind by the failed inits");
}

static void client_arguments(const char *name, hdb_handle_t h)
{
	hdb_handle_t none = 0;
	int fd;
	unsigned int fc;
	void *buf = (void *)1;
	char res[64];
	coroipc_request_header_t head = { sizeof(head), 0 };
	struct iovec iov = { &head, sizeof(head) };
	struct iovec parts[3] = { { &head, 4 }, { NULL, 0 }, { (char *)&head + 4, 4 } };
	struct iovec null_base = { NULL, 8 };

	EXPECT(coroipcc_service_connect(NULL, 1, &none), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect(name, 1, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect("", 1, &none), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect(name, 70000, &none), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_service_connect(name, 2, &none), CS_ERR_NOT_EXIST);
	EXPECT(coroipcc_service_connect("coroipc-abuse-nobody-listens", 1, &none), CS_ERR_NOT_EXIST);
	EXPECT(coroipcc_fd_get(h, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_dispatch_flow_control_get(h, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_dispatch_get(h, NULL, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, NULL, 1, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 0, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 100000, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &null_base, 1, res, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 1, NULL, sizeof(res)), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive(h, &iov, 1, res, 0), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf(h, &iov, 1, NULL), CS_ERR_INVALID_PARAM);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf(h, NULL, 1, &buf), CS_ERR_INVALID_PARAM);
	CHECK(buf == NULL, "in_buf clears its out-pointer on failure");
	/* Headers that lie. */
	EXPECT(request(h, 9, 0, 8), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 7, 0, 8), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 0, 0, 8), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, -1, 0, 8), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, INT_MAX, 0, 8), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 8, -1, 8), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 8, 65536, 8), CS_ERR_INVALID_PARAM);
	EXPECT(request(h, 4, 0, 4), CS_ERR_INVALID_PARAM); /* shorter than a header */
	EXPECT(request(h, 8, 9, 8), CS_ERR_INVALID_PARAM); /* no handler for command 9 */
	/* Still usable; a header split across iovecs with an empty one between. */
	EXPECT(request(h, 8, 0, 8), CS_OK);
	EXPECT(coroipcc_msg_send_reply_receive(h, parts, 3, res, sizeof(res)), CS_OK);
	EXPECT(coroipcc_fd_get(h, &fd), CS_OK);
	EXPECT(coroipcc_dispatch_flow_control_get(h, &fc), CS_OK);
	/* Releasing with nothing held is fine. */
	EXPECT(coroipcc_msg_reply_release(h), CS_OK);
	EXPECT(coroipcc_dispatch_put(h), CS_OK);
}

static void client_misuse_in_handler(hdb_handle_t h)
{
	coroipc_request_header_t head = { sizeof(head), 1 };
	struct iovec iov = { &head, sizeof(head) };
	void *res = NULL, *buf = NULL;
	EXPECT(coroipcc_msg_send_reply_receive_in_buf(h, &iov, 1, &res), CS_OK);
	CHECK(res != NULL && ((coroipc_response_header_t *)res)->size == 12, "zero-copy response");
	EXPECT(coroipcc_dispatch_get(h, &buf, 5000), CS_OK); /* releases the response */
	CHECK(buf != NULL && ((coroipc_response_header_t *)buf)->size == 12, "dispatch message");
	/* Disconnecting while holding a buffer frees it too (checked by the leak check). */
}

static void *dispatch_from_a_thread(void *conn)
{
	for (uint32_t i = 0; i < 100; i++) {
		struct { coroipc_response_header_t h; uint32_t seq; } ev = { { sizeof(ev), 7, CS_OK }, i };
		cs_error_t err;
		while ((err = coroipcs_dispatch_send(conn, &ev, sizeof(ev))) == CS_ERR_TRY_AGAIN)
			usleep(1000);
		CHECK(err == CS_OK, "dispatch_send from a thread: %d", err);
	}
	return NULL;
}

/* Dispatch messages sent from a thread of the daemon other than its loop. */
static void dispatch_from_another_thread(hdb_handle_t h)
{
	pthread_t sender;
	CHECK(pthread_create(&sender, NULL, dispatch_from_a_thread, atomic_load(&last_conn)) == 0, "thread");
	for (uint32_t i = 0; i < 100; i++) {
		void *buf = NULL;
		EXPECT(coroipcc_dispatch_get(h, &buf, 5000), CS_OK);
		CHECK(buf != NULL, "message %u arrived", i);
		const struct { coroipc_response_header_t h; uint32_t seq; } *ev = buf;
		CHECK(ev->h.size == 16 && ev->seq == i, "message %u in order (%u)", i, ev->seq);
		EXPECT(coroipcc_dispatch_put(h), CS_OK);
	}
	pthread_join(sender, NULL);
}

static void freed_and_foreign(hdb_handle_t h)
{
	void *conn = atomic_load(&last_conn);
	coroipc_response_header_t res = { sizeof(res), 0, CS_OK };
	char out[64];
	int fd;
	unsigned int fc;
	void *buf;
	struct iovec iov = { &res, 8 };
	res.size = 8;

	/* Foreign: a connection token as a client handle and the reverse; made-up ones. */
	EXPECT(coroipcc_fd_get((hdb_handle_t)(uintptr_t)conn, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_refcount_inc((void *)(uintptr_t)h), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_fd_get(h + 1, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_fd_get(0, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_fd_get(~(hdb_handle_t)0, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_service_disconnect(0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_msg_reply_release(0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_put(0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_get(0, &buf, 0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_flow_control_get(0, &fc), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_handler_dispatch(0, 0, (void *)(uintptr_t)12345), CS_ERR_BAD_HANDLE);

	/* The daemon holds a reference: the connection outlives the disconnect. */
	EXPECT(coroipcs_refcount_inc(conn), CS_OK);
	EXPECT(coroipcc_service_disconnect(h), CS_OK);
	for (int i = 0; i < 500 && !atomic_load(&exited); i++)
		usleep(10000);
	CHECK(atomic_load(&exited), "exit_fn ran after the disconnect");
	/* A context the library took back (poll_dispatch_destroy) is stale. */
	CHECK(atomic_load(&last_destroyed) != NULL, "fds handed back");
	EXPECT(coroipcs_handler_dispatch(0, 0, atomic_load(&last_destroyed)), CS_ERR_BAD_HANDLE);
	CHECK(coroipcs_private_data_get(conn) != NULL, "private data kept by the reference");
	res.size = sizeof(res);
	EXPECT(coroipcs_dispatch_send(conn, &res, sizeof(res)), CS_ERR_LIBRARY);
	EXPECT(coroipcs_response_send(conn, &res, sizeof(res)), CS_ERR_LIBRARY);
	EXPECT(coroipcs_refcount_dec(conn), CS_OK); /* the last reference: freed */
	CHECK(coroipcs_private_data_get(conn) == NULL, "freed");
	EXPECT(coroipcs_response_send(conn, &res, sizeof(res)), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_response_iov_send(conn, &iov, 1), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_dispatch_send(conn, &res, sizeof(res)), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_dispatch_iov_send(conn, &iov, 1), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_refcount_inc(conn), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_refcount_dec(conn), CS_ERR_BAD_HANDLE);

	/* The freed client context, in every client function. */
	coroipc_request_header_t head = { sizeof(head), 0 };
	struct iovec req = { &head, sizeof(head) };
	EXPECT(coroipcc_service_disconnect(h), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_fd_get(h, &fd), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_msg_send_reply_receive(h, &req, 1, out, sizeof(out)), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_msg_send_reply_receive_in_buf(h, &req, 1, &buf), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_msg_reply_release(h), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_get(h, &buf, 0), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_put(h), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcc_dispatch_flow_control_get(h, &fc), CS_ERR_BAD_HANDLE);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SOCKET_NAME\n", argv[0]);
		return 2;
	}
	const char *name = argv[1];
	struct coroipcs_init_state state = {
		.socket_name = name,
		.malloc = counting_malloc,
		.free = counting_free,
		.service_available = available,
		.private_data_size_get = private_size,
		.poll_accept_add = poll_accept_add,
		.poll_dispatch_add = poll_dispatch_add,
		.poll_dispatch_destroy = poll_dispatch_destroy,
		.init_fn_get = init_get,
		.exit_fn_get = exit_get,
		.handler_fn_get = handler_get,
	};
	pthread_t thread;
	hdb_handle_t h = 0;

	server_before_init();
	int fds_before = count_fds();
	EXPECT(coroipcs_ipc_init(&state), CS_OK);
	EXPECT(coroipcs_ipc_init(&state), CS_ERR_EXIST);
	CHECK(pthread_create(&thread, NULL, server_loop, NULL) == 0, "thread");

	EXPECT(coroipcc_service_connect(name, 1, &h), CS_OK);
	client_arguments(name, h);
	client_misuse_in_handler(h);
	dispatch_from_another_thread(h);
	freed_and_foreign(h);

	/* A client still connected when the server exits. */
	EXPECT(coroipcc_service_connect(name, 1, &h), CS_OK);
	atomic_store(&stop, 1);
	pthread_join(thread, NULL);
	EXPECT(coroipcs_ipc_exit(), CS_OK);
	CHECK(n_watched == 0, "every fd handed back at exit (%d left)", n_watched);
	EXPECT(coroipcs_ipc_exit(), CS_ERR_BAD_HANDLE);
	EXPECT(coroipcs_handler_accept(0, 0, NULL), CS_ERR_BAD_HANDLE);
	EXPECT(request(h, 8, 0, 8), CS_ERR_LIBRARY); /* the server is gone */
	EXPECT(coroipcc_service_disconnect(h), CS_OK);
	CHECK(count_fds() == fds_before, "every descriptor closed: %d open, %d before",
	      count_fds(), fds_before);
	CHECK(atomic_load(&allocated) == 2 && atomic_load(&freed) == 2,
	      "private data through the daemon's allocator: %d allocated, %d freed",
	      atomic_load(&allocated), atomic_load(&freed));
	printf("ok abuse\n");
	return 0;
}
