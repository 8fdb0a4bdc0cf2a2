/* A coroipcc client of the example services (protocol.h).
 *
 *   client SOCKET_NAME basic     every feature; exit 0 if all behave
 *   client SOCKET_NAME hang      prints "waiting", blocks in a request never answered;
 *                                exit 0 if it ends with CS_ERR_LIBRARY (server killed)
 *   client SOCKET_NAME dispatch  prints "waiting", blocks in coroipcc_dispatch_get;
 *                                exit 0 if it ends with CS_ERR_LIBRARY (server killed)
 *   client SOCKET_NAME sleep     connects, prints "connected", sleeps (to be killed)
 *   client SOCKET_NAME badheader expects responses without a valid header (a Rust
 *                                server's command 4): CS_ERR_MESSAGE_ERROR
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coroipcc.h"
#include "protocol.h"

#define CHECK(cond, ...)                                   \
	do {                                               \
		if (!(cond)) {                             \
			fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);      \
			fprintf(stderr, "\n");             \
			exit(1);                           \
		}                                          \
	} while (0)

static hdb_handle_t connect_to(const char *name, unsigned int service)
{
	hdb_handle_t h = 0;
	cs_error_t err = coroipcc_service_connect(name, service, &h);
	CHECK(err == CS_OK, "connect to service %u: %d", service, err);
	return h;
}

/* Sends {header, value} and returns the response's value. */
static cs_error_t call(hdb_handle_t h, int id, uint32_t value, uint32_t *out)
{
	struct req_value req = { { sizeof(req), id }, value };
	struct res_value res;
	struct iovec iov = { &req, sizeof(req) };
	memset(&res, 0, sizeof(res));
	cs_error_t err = coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res));
	if (err == CS_OK) {
		CHECK(res.header.size == sizeof(res), "response size %d", res.header.size);
		CHECK(res.header.error == CS_OK, "response error %d", res.header.error);
		*out = res.value;
	}
	return err;
}

static void echo(hdb_handle_t h)
{
	coroipc_request_header_t req = { (int)(sizeof(req) + 11), ECHO_ECHO };
	struct iovec iov[3] = { { &req, sizeof(req) }, { "hello", 5 }, { " world", 6 } };
	char res[64];
	CHECK(coroipcc_msg_send_reply_receive(h, iov, 3, res, sizeof(res)) == CS_OK, "echo");
	const coroipc_response_header_t *head = (const void *)res;
	CHECK(head->size == (int)(sizeof(*head) + 11), "echo size %d", head->size);
	CHECK(memcmp(res + sizeof(*head), "hello world", 11) == 0, "echo payload");

	/* Zero copy: the response stays in shared memory until released. */
	void *in_buf = NULL;
	CHECK(coroipcc_msg_send_reply_receive_in_buf(h, iov, 3, &in_buf) == CS_OK, "in_buf");
	head = in_buf;
	CHECK(head->size == (int)(sizeof(*head) + 11), "in_buf size %d", head->size);
	CHECK(memcmp((char *)in_buf + sizeof(*head), "hello world", 11) == 0, "in_buf payload");
	CHECK(coroipcc_msg_reply_release(h) == CS_OK, "release");

	/* The response written over the request's own buffer. */
	union {
		coroipc_request_header_t req;
		coroipc_response_header_t res;
		char bytes[24];
	} same;
	same.req.size = 20;
	same.req.id = ECHO_ECHO;
	memcpy(same.bytes + 8, "same buffer", 12);
	struct iovec one = { &same, 20 };
	CHECK(coroipcc_msg_send_reply_receive(h, &one, 1, &same, sizeof(same)) == CS_OK, "in place");
	CHECK(same.res.size == 24, "in place size %d", same.res.size);
	CHECK(memcmp(same.bytes + 12, "same buffer", 12) == 0, "in place payload");

	/* A response larger than the buffer. */
	CHECK(coroipcc_msg_send_reply_receive(h, iov, 3, res, 8) == CS_ERR_TOO_BIG, "too big");
	printf("ok echo\n");
}

static void lies(hdb_handle_t h)
{
	struct req_value req = { { sizeof(req) + 4, ECHO_ECHO }, 0 };
	struct res_value res;
	struct iovec iov = { &req, sizeof(req) };
	CHECK(coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res)) == CS_ERR_INVALID_PARAM,
	      "size larger than the message");
	req.header.size = 4;
	CHECK(coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res)) == CS_ERR_INVALID_PARAM,
	      "size smaller than the message");
	req.header.size = sizeof(req);
	req.header.id = 70000;
	CHECK(coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res)) == CS_ERR_INVALID_PARAM,
	      "id out of range");
	req.header.id = 77;
	CHECK(coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res)) == CS_ERR_INVALID_PARAM,
	      "unknown command");
	uint32_t v = 0;
	CHECK(call(h, ECHO_ECHO, 5, &v) == CS_OK && v == 5, "usable after the refusals");
	printf("ok lies\n");
}

/* Dispatch with flow control: the server fills the ring (and the queue behind it) until
 * it is refused; the client sees flow control on, drains every message in order, and
 * sees it off. The fd polls readable while messages wait. */
static void dispatch(hdb_handle_t h)
{
	uint32_t sent = 0, fc = 0;
	int fd = -1;
	CHECK(coroipcc_fd_get(h, &fd) == CS_OK && fd >= 0, "fd_get");
	CHECK(coroipcc_dispatch_flow_control_get(h, &fc) == CS_OK && fc == 0, "flow control off");
	CHECK(call(h, ECHO_DISPATCH, 1000000, &sent) == CS_OK, "dispatch request");
	CHECK(sent > 100 && sent < 1000000, "the server was refused at some point: sent %u", sent);
	CHECK(coroipcc_dispatch_flow_control_get(h, &fc) == CS_OK && fc == 1, "flow control on");
	for (uint32_t i = 0; i < sent; i++) {
		void *buf = NULL;
		cs_error_t err = coroipcc_dispatch_get(h, &buf, i % 2 ? 0 : 5000);
		if (err == CS_OK && buf == NULL) {
			/* Nothing now (queued behind the ring): poll the fd, then retry. */
			struct pollfd p = { fd, POLLIN, 0 };
			CHECK(poll(&p, 1, 5000) == 1, "fd readable for message %u", i);
			err = coroipcc_dispatch_get(h, &buf, 5000);
		}
		CHECK(err == CS_OK && buf != NULL, "dispatch_get %u: %d", i, err);
		const struct res_value *ev = buf;
		CHECK(ev->header.size == sizeof(*ev) && ev->value == i, "message %u has %u", i, ev->value);
		CHECK(coroipcc_dispatch_put(h) == CS_OK, "put");
	}
	void *none = (void *)1;
	CHECK(coroipcc_dispatch_get(h, &none, 0) == CS_OK && none == NULL, "all drained");
	/* The server clears the state when it next looks at the ring: give it a moment. */
	for (int tries = 0; tries < 500; tries++) {
		CHECK(coroipcc_dispatch_flow_control_get(h, &fc) == CS_OK, "flow_control_get");
		if (fc == 0)
			break;
		usleep(10000);
	}
	CHECK(fc == 0, "flow control off again");

	printf("ok dispatch\n");
}

/* Answered outside the handler, after the client waited (blocked) for it; a dispatch
 * message sent meanwhile makes the fd readable (a loop polling it is not stranded). */
static void later(hdb_handle_t h)
{
	int fd = -1;
	CHECK(coroipcc_fd_get(h, &fd) == CS_OK, "fd_get");
	for (int round = 0; round < 3; round++) {
		uint32_t v = 0;
		void *buf = (void *)1;
		CHECK(coroipcc_dispatch_get(h, &buf, 0) == CS_OK && buf == NULL, "nothing waits");
		CHECK(call(h, ECHO_LATER, 0, &v) == CS_OK && v == 42, "answered outside the handler: %u", v);
		struct pollfd p = { fd, POLLIN, 0 };
		CHECK(poll(&p, 1, 5000) == 1, "fd readable for the message sent during the request");
		CHECK(coroipcc_dispatch_get(h, &buf, 0) == CS_OK && buf != NULL, "the message");
		CHECK(((const struct res_value *)buf)->value == 7, "its value");
		CHECK(coroipcc_dispatch_put(h) == CS_OK, "put");
	}
	printf("ok later\n");
}

static void counter(const char *name)
{
	hdb_handle_t a = connect_to(name, SVC_COUNTER), b = connect_to(name, SVC_COUNTER);
	uint32_t v = 0;
	for (uint32_t i = 1; i <= 3; i++)
		CHECK(call(a, COUNTER_COUNT, 0, &v) == CS_OK && v == i, "a counts %u", v);
	CHECK(call(b, COUNTER_COUNT, 0, &v) == CS_OK && v == 1, "b has its own counter: %u", v);
	CHECK(call(a, COUNTER_BUSY, 0, &v) == CS_ERR_TRY_AGAIN, "sending_allowed refuses");
	CHECK(coroipcc_service_disconnect(a) == CS_OK && coroipcc_service_disconnect(b) == CS_OK, "disconnect");
	CHECK(call(a, COUNTER_COUNT, 0, &v) == CS_ERR_BAD_HANDLE, "freed handle");
	CHECK(coroipcc_service_disconnect(a) == CS_ERR_BAD_HANDLE, "double disconnect");
	printf("ok counter\n");
}

struct dispatch_arg {
	hdb_handle_t h;
	uint32_t want, got;
};

static void *dispatch_thread(void *p)
{
	struct dispatch_arg *a = p;
	while (a->got < a->want) {
		void *buf = NULL;
		cs_error_t err = coroipcc_dispatch_get(a->h, &buf, -1);
		CHECK(err == CS_OK, "dispatch thread: %d", err);
		if (buf == NULL)
			continue;
		const struct res_value *ev = buf;
		CHECK(ev->value == a->got, "dispatch thread: message %u has %u", a->got, ev->value);
		a->got++;
		CHECK(coroipcc_dispatch_put(a->h) == CS_OK, "put");
	}
	return NULL;
}

/* One context, two threads, as in the seed: one blocks in coroipcc_dispatch_get while
 * the other sends requests. */
static void threads(const char *name)
{
	hdb_handle_t h = connect_to(name, SVC_ECHO);
	struct dispatch_arg a = { h, 50, 0 };
	pthread_t t;
	uint32_t v = 0;
	CHECK(pthread_create(&t, NULL, dispatch_thread, &a) == 0, "thread");
	usleep(20000); /* let it block */
	for (uint32_t i = 0; i < 20; i++)
		CHECK(call(h, ECHO_ECHO, i, &v) == CS_OK && v == i, "request %u while the other thread waits", i);
	CHECK(call(h, ECHO_DISPATCH, 50, &v) == CS_OK && v == 50, "dispatch 50: %u", v);
	CHECK(pthread_join(t, NULL) == 0 && a.got == 50, "the dispatch thread got all");
	CHECK(coroipcc_service_disconnect(h) == CS_OK, "disconnect");
	printf("ok threads\n");
}

static int basic(const char *name)
{
	hdb_handle_t none = 0;
	CHECK(coroipcc_service_connect(name, 9, &none) == CS_ERR_NOT_EXIST, "no service 9");
	hdb_handle_t h = connect_to(name, SVC_ECHO);
	echo(h);
	lies(h);
	dispatch(h);
	later(h);
	CHECK(coroipcc_service_disconnect(h) == CS_OK, "disconnect");
	threads(name);
	counter(name);
	printf("ok all\n");
	return 0;
}

static int blocked(const char *name, int in_dispatch)
{
	hdb_handle_t h = connect_to(name, SVC_ECHO);
	cs_error_t err;
	printf("waiting\n");
	fflush(stdout);
	if (in_dispatch) {
		void *buf = NULL;
		err = coroipcc_dispatch_get(h, &buf, -1);
	} else {
		uint32_t v = 0;
		err = call(h, ECHO_HANG, 0, &v);
	}
	printf("result %d\n", err);
	/* Every later call reports the dead server too, and disconnect still frees. */
	uint32_t v = 0;
	CHECK(call(h, ECHO_ECHO, 0, &v) == CS_ERR_LIBRARY, "after the server died");
	CHECK(coroipcc_service_disconnect(h) == CS_OK, "disconnect");
	return err == CS_ERR_LIBRARY ? 0 : 1;
}

static int bad_header(const char *name)
{
	hdb_handle_t h = connect_to(name, SVC_ECHO);
	coroipc_request_header_t req = { sizeof(req), 4 };
	struct iovec iov = { &req, sizeof(req) };
	char res[64];
	void *buf = NULL;
	CHECK(coroipcc_msg_send_reply_receive(h, &iov, 1, res, sizeof(res)) == CS_ERR_MESSAGE_ERROR, "copy");
	CHECK(coroipcc_msg_send_reply_receive_in_buf(h, &iov, 1, &buf) == CS_ERR_MESSAGE_ERROR && buf == NULL,
	      "in_buf");
	uint32_t v = 0;
	CHECK(call(h, ECHO_ECHO, 7, &v) == CS_OK && v == 7, "usable afterwards");
	CHECK(coroipcc_service_disconnect(h) == CS_OK, "disconnect");
	printf("ok badheader\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s SOCKET_NAME basic|hang|dispatch|sleep|badheader\n", argv[0]);
		return 2;
	}
	const char *name = argv[1], *mode = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "basic") == 0)
		return basic(name);
	if (strcmp(mode, "hang") == 0)
		return blocked(name, 0);
	if (strcmp(mode, "dispatch") == 0)
		return blocked(name, 1);
	if (strcmp(mode, "badheader") == 0)
		return bad_header(name);
	if (strcmp(mode, "sleep") == 0) {
		hdb_handle_t h = connect_to(name, SVC_ECHO);
		(void)h;
		printf("connected\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
