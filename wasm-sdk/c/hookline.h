/*
 * hookline.h - C SDK for hookline routing rules, guest ABI v2 and v1 (see ../ABI.md).
 *
 * Single header, no libc, no allocator. Build a rule with Debian's clang-14 + lld-14:
 *
 *   clang-14 --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin \
 *       -Wl,--no-entry -Wl,--strip-all -o my_rule.wasm my_rule.c
 *
 * (-mbulk-memory makes the compiler's own memcpy/memset become wasm instructions
 * instead of calls to a libc that is not there; -fno-builtin keeps it from turning
 * loops into calls to strlen & co. Both are optional for code that avoids them.)
 *
 * A rule defines two functions and names them in HOOKLINE_RULE, which emits the ABI's
 * exports (hookline_abi_v2, hookline_init, hookline_on_event); the linker exports
 * `memory` by default. HOOKLINE_RULE_V1 emits hookline_abi_v1 instead, for a module
 * that speaks ABI v1 (the same functions work for both: see HOOKLINE_RULE below):
 *
 *   #include "hookline.h"
 *   static int32_t init(void) {
 *       return hl_subscribe("message.publish", "devices/+/state");  // >= 0: index
 *   }
 *   static int32_t on_event(int32_t hook, int32_t subscription) {
 *       return hl_route("message_state");                            // default key
 *   }
 *   HOOKLINE_RULE(init, on_event)
 *
 * A downlink rule (ABI v2) subscribes to "kafka.record" with an exact Kafka topic name
 * and publishes MQTT messages for each consumed record:
 *
 *   static int32_t init(void) { return hl_subscribe("kafka.record", "device_commands"); }
 *   static int32_t on_event(int32_t hook, int32_t subscription) {
 *       static char topic[4200] = "devices/";   // + key + "/command"
 *       ...                                      // hl_read_all(HL_FIELD_KEY, ...)
 *       return hl_publish_value(topic, 1, 0);   // the record's value, QoS 1
 *   }
 *
 * Return conventions of the helpers follow the ABI: a negative value is an HL_ERR_*
 * code, anything else is success. HOOKLINE_RULE turns any negative return of your
 * functions into that (non-zero) result and any non-negative one into 0, so
 * `return hl_route(...);` is a complete on_event.
 */
#ifndef HOOKLINE_H
#define HOOKLINE_H

#if !defined(__wasm32__)
#error "hookline.h targets wasm32 only: compile with --target=wasm32"
#endif

/* No libc: take the fixed-width types from the compiler itself. `int32_t` is defined
 * too (the same type <stdint.h> uses); define HOOKLINE_NO_STDINT_NAMES before including
 * this header if your code brings its own <stdint.h> and compiles as C99. */
typedef __INT32_TYPE__ hl_i32;
typedef unsigned char hl_u8;
#ifndef HOOKLINE_NO_STDINT_NAMES
typedef hl_i32 int32_t;
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ABI constants ------------------------------------------------------------- */

/* Hook codes: the first argument of hookline_on_event. */
enum {
    HL_CLIENT_CONNECTED = 0,
    HL_CLIENT_DISCONNECTED = 1,
    HL_SESSION_SUBSCRIBED = 2,
    HL_SESSION_UNSUBSCRIBED = 3,
    HL_MESSAGE_PUBLISH = 4,
    HL_MESSAGE_DELIVERED = 5,
    HL_MESSAGE_ACKED = 6,
    HL_ACCESS_DENIED = 7,
    HL_KAFKA_RECORD = 8        /* v2: a record consumed from Kafka (topic = Kafka topic) */
};

/* event_read field codes. */
enum {
    HL_FIELD_TOPIC = 0,
    HL_FIELD_CLIENT_ID = 1,
    HL_FIELD_USERNAME = 2,
    HL_FIELD_PAYLOAD = 3,
    HL_FIELD_FROM = 4,
    HL_FIELD_PEER = 5,
    HL_FIELD_KEY = 6,          /* kafka.record: the record's key (empty if none) */
    HL_FIELD_ACTION = 7,       /* access.denied: "publish", "subscribe" or "will" */
    HL_FIELD_PARTITION = 8,    /* kafka.record: the partition, decimal text */
    HL_FIELD_OFFSET = 9        /* kafka.record: the offset, decimal text */
};

/* Errors returned by host calls (negative), plus one of this SDK. */
enum {
    HL_OK = 0,
    HL_ERR_UNKNOWN = -1,      /* unknown hook name / field code / route_to destination */
    HL_ERR_FILTER = -2,       /* invalid MQTT topic filter */
    HL_ERR_WRONG_TIME = -3,   /* subscribe outside init, route outside on_event, ... */
    HL_ERR_MEMORY = -4,       /* range outside memory, or not UTF-8 */
    HL_ERR_LIMIT = -5,        /* too many subscriptions/routes/headers: voids the decision */
    HL_ERR_TOPIC = -6,        /* invalid Kafka topic, or a topic route_to's destination refuses: voids it */
    HL_ERR_TOO_LONG = -7,     /* key/header/property too long: voids the decision */
    HL_ERR_PUBLISH = -8,      /* v2: invalid MQTT publish (topic, QoS, property): voids it */
    HL_ERR_NO_FIELD = -9,     /* v2.1: the payload has no member/element at that path */
    HL_ERR_WRONG_TYPE = -10,  /* v2.1: the value at that path is not of the kind asked for */
    HL_ERR_NOT_JSON = -11,    /* v2.1: the payload is not JSON */
    HL_ERR_PATH = -12,        /* v2.1: not a valid payload path */
    HL_ERR_BUFFER_TOO_SMALL = -100 /* SDK: hl_read_all's buffer cannot hold the field */
};

/* route_value kinds (v2): the record value of the most recent route. */
enum { HL_VALUE_ENVELOPE = 0, HL_VALUE_PAYLOAD = 1, HL_VALUE_BYTES = 2 };

/* publish_property ids (v2): MQTT 5 property identifiers. */
enum {
    HL_PROP_PAYLOAD_FORMAT_INDICATOR = 1, /* 1 byte, 0 or 1 */
    HL_PROP_MESSAGE_EXPIRY_INTERVAL = 2,  /* 4 bytes, big-endian seconds */
    HL_PROP_CONTENT_TYPE = 3,             /* UTF-8 */
    HL_PROP_RESPONSE_TOPIC = 8,           /* UTF-8 topic name */
    HL_PROP_CORRELATION_DATA = 9          /* bytes */
};

/* Log levels. */
enum { HL_LOG_ERROR = 0, HL_LOG_WARN = 1, HL_LOG_INFO = 2, HL_LOG_DEBUG = 3 };

/* key_len value of route() and route_to() meaning "the default key" (the client id). */
#define HL_DEFAULT_KEY (-1)
/* payload_len value of publish() meaning "the consumed record's value" (v2). */
#define HL_RECORD_VALUE (-1)

/* ---- Raw host imports (module "hookline") ---------------------------------------- */

#define HL_IMPORT(name) __attribute__((import_module("hookline"), import_name(name)))

HL_IMPORT("subscribe")
hl_i32 hookline_subscribe(const char *hook, hl_i32 hook_len, const char *filter, hl_i32 filter_len);
HL_IMPORT("event_read")
hl_i32 hookline_event_read(hl_i32 field, void *dst, hl_i32 dst_len);
HL_IMPORT("event_qos")
hl_i32 hookline_event_qos(void);
HL_IMPORT("route")
hl_i32 hookline_route(const char *topic, hl_i32 topic_len, const void *key, hl_i32 key_len);
HL_IMPORT("route_header")
hl_i32 hookline_route_header(const char *name, hl_i32 name_len, const void *value, hl_i32 value_len);
HL_IMPORT("log")
void hookline_log(hl_i32 level, const char *msg, hl_i32 len);
HL_IMPORT("config_get")
hl_i32 hookline_config_get(const char *key, hl_i32 key_len, void *dst, hl_i32 dst_len);
/* v2 imports: a module importing them needs a gateway that speaks ABI v2. */
HL_IMPORT("route_value")
hl_i32 hookline_route_value(hl_i32 kind, const void *ptr, hl_i32 len);
HL_IMPORT("route_to")
hl_i32 hookline_route_to(const char *dest, hl_i32 dest_len, const char *topic, hl_i32 topic_len, const void *key, hl_i32 key_len);
HL_IMPORT("event_header")
hl_i32 hookline_event_header(const char *name, hl_i32 name_len, void *dst, hl_i32 dst_len);
HL_IMPORT("publish")
hl_i32 hookline_publish(const char *topic, hl_i32 topic_len, hl_i32 qos, hl_i32 retain, const void *payload, hl_i32 payload_len);
HL_IMPORT("publish_property")
hl_i32 hookline_publish_property(hl_i32 id, const void *ptr, hl_i32 len);
HL_IMPORT("publish_user_property")
hl_i32 hookline_publish_user_property(const char *name, hl_i32 name_len, const char *value, hl_i32 value_len);
/* v2.1 imports (payload fields): a module importing them needs a gateway of ABI 2.1. */
HL_IMPORT("payload_f64")
hl_i32 hookline_payload_f64(const char *path, hl_i32 path_len, double *dst);
HL_IMPORT("payload_bool")
hl_i32 hookline_payload_bool(const char *path, hl_i32 path_len);
HL_IMPORT("payload_str")
hl_i32 hookline_payload_str(const char *path, hl_i32 path_len, char *dst, hl_i32 dst_len);
HL_IMPORT("payload_json")
hl_i32 hookline_payload_json(const char *path, hl_i32 path_len, char *dst, hl_i32 dst_len);

/* ---- Helpers ---------------------------------------------------------------------- */

/* Length of a NUL-terminated string (there is no libc strlen). */
static inline hl_i32 hl_strlen(const char *s) {
    hl_i32 n = 0;
    while (s[n] != 0) n++;
    return n;
}

/* During init: subscribe to hook `hook` (e.g. "message.publish") and MQTT filter
 * `filter`. Returns the subscription index (>= 0) or a negative HL_ERR_*. */
static inline hl_i32 hl_subscribe(const char *hook, const char *filter) {
    return hookline_subscribe(hook, hl_strlen(hook), filter, hl_strlen(filter));
}

/* Route the current event to Kafka topic `topic` with the default key. Returns the
 * route index or a negative HL_ERR_*. */
static inline hl_i32 hl_route(const char *topic) {
    return hookline_route(topic, hl_strlen(topic), (const void *)0, HL_DEFAULT_KEY);
}

/* Route with an explicit record key of `key_len` bytes (0 is an empty key). */
static inline hl_i32 hl_route_key(const char *topic, const void *key, hl_i32 key_len) {
    return hookline_route(topic, hl_strlen(topic), key, key_len);
}

/* v2: route the current event, with the default key, to the destination named `dest`
 * ("kafka" or "file" for the [sink] kind, "<name>" for a RabbitMQ [sink.<name>];
 * hl_route uses the first configured one). `topic` is the Kafka topic, the RabbitMQ
 * exchange ("" = the default exchange; the key is the routing key) or the file sink's
 * topic field. Returns the route index, HL_ERR_UNKNOWN for no such destination, or
 * another negative HL_ERR_*. */
static inline hl_i32 hl_route_to(const char *dest, const char *topic) {
    return hookline_route_to(dest, hl_strlen(dest), topic, hl_strlen(topic), (const void *)0, HL_DEFAULT_KEY);
}

/* v2: hl_route_to with an explicit record (routing) key of `key_len` bytes. */
static inline hl_i32 hl_route_to_key(const char *dest, const char *topic, const void *key, hl_i32 key_len) {
    return hookline_route_to(dest, hl_strlen(dest), topic, hl_strlen(topic), key, key_len);
}

/* Add a header to the most recent successful route. Returns 0 or a negative HL_ERR_*. */
static inline hl_i32 hl_header(const char *name, const void *value, hl_i32 value_len) {
    return hookline_route_header(name, hl_strlen(name), value, value_len);
}

/* Copy up to `cap` bytes of field `field` into `buf`; returns the field's FULL length
 * (which may exceed `cap`) or a negative HL_ERR_*. */
static inline hl_i32 hl_read(hl_i32 field, void *buf, hl_i32 cap) {
    return hookline_event_read(field, buf, cap);
}

/* Copy the whole field into `buf`; returns its length, or HL_ERR_BUFFER_TOO_SMALL when
 * it is longer than `cap` (never a cut value), or another negative HL_ERR_*. */
static inline hl_i32 hl_read_all(hl_i32 field, void *buf, hl_i32 cap) {
    hl_i32 n = hookline_event_read(field, buf, cap);
    if (n > cap) return HL_ERR_BUFFER_TOO_SMALL;
    return n;
}

/* QoS of the message (0..2); 0 for client events and kafka.record. */
static inline hl_i32 hl_qos(void) { return hookline_event_qos(); }

/* v2: choose the record value of the most recent route: HL_VALUE_ENVELOPE (default),
 * HL_VALUE_PAYLOAD, or HL_VALUE_BYTES with `len` bytes at `ptr`. 0 or HL_ERR_*. */
static inline hl_i32 hl_route_value(hl_i32 kind, const void *ptr, hl_i32 len) {
    return hookline_route_value(kind, ptr, len);
}

/* v2 (kafka.record): copy up to `cap` bytes of the consumed record's first header named
 * `name` into `buf`; returns its FULL length, or HL_ERR_UNKNOWN (-1) when there is no
 * such header. */
static inline hl_i32 hl_event_header(const char *name, void *buf, hl_i32 cap) {
    return hookline_event_header(name, hl_strlen(name), buf, cap);
}

/* v2 (kafka.record): publish the consumed record's value to MQTT topic `topic` (a
 * NUL-terminated topic name) at `qos` 0..2, retained if `retain` is 1. Returns the
 * publish index or a negative HL_ERR_*. */
static inline hl_i32 hl_publish_value(const char *topic, hl_i32 qos, hl_i32 retain) {
    return hookline_publish(topic, hl_strlen(topic), qos, retain, (const void *)0, HL_RECORD_VALUE);
}

/* v2 (kafka.record): publish `len` bytes at `payload` instead of the record's value. */
static inline hl_i32 hl_publish(const char *topic, hl_i32 qos, hl_i32 retain, const void *payload, hl_i32 len) {
    return hookline_publish(topic, hl_strlen(topic), qos, retain, payload, len);
}

/* v2: set MQTT 5 property `id` (HL_PROP_*) of the most recent publish to `len` bytes at
 * `ptr`. 0 or a negative HL_ERR_*. */
static inline hl_i32 hl_publish_property(hl_i32 id, const void *ptr, hl_i32 len) {
    return hookline_publish_property(id, ptr, len);
}

/* v2: message expiry interval (seconds) of the most recent publish. */
static inline hl_i32 hl_publish_expiry(hl_i32 seconds) {
    hl_u8 be[4];
    be[0] = (hl_u8)((unsigned)seconds >> 24);
    be[1] = (hl_u8)((unsigned)seconds >> 16);
    be[2] = (hl_u8)((unsigned)seconds >> 8);
    be[3] = (hl_u8)seconds;
    return hookline_publish_property(HL_PROP_MESSAGE_EXPIRY_INTERVAL, be, 4);
}

/* v2: content type (NUL-terminated UTF-8) of the most recent publish. */
static inline hl_i32 hl_publish_content_type(const char *content_type) {
    return hookline_publish_property(HL_PROP_CONTENT_TYPE, content_type, hl_strlen(content_type));
}

/* v2: add the MQTT 5 user property name=value (NUL-terminated UTF-8) to the most recent
 * publish. 0 or a negative HL_ERR_*. */
static inline hl_i32 hl_publish_user_property(const char *name, const char *value) {
    return hookline_publish_user_property(name, hl_strlen(name), value, hl_strlen(value));
}

/* v2.1: payload fields by path ("battery", "lock.state", "readings[0]"; see ABI.md).
 * A failed lookup returns HL_ERR_NO_FIELD, HL_ERR_WRONG_TYPE, HL_ERR_NOT_JSON or
 * HL_ERR_PATH and does not void the event's decision. */

/* The number at `path`, stored in *out. Returns 0 or a negative HL_ERR_*. */
static inline hl_i32 hl_payload_f64(const char *path, double *out) {
    return hookline_payload_f64(path, hl_strlen(path), out);
}

/* The bool at `path`: 1 (true), 0 (false) or a negative HL_ERR_*. */
static inline hl_i32 hl_payload_bool(const char *path) {
    return hookline_payload_bool(path, hl_strlen(path));
}

/* Copy up to `dst_len` bytes of the string at `path` (unescaped UTF-8, no quotes, no
 * NUL added) into `dst`; returns its FULL length or a negative HL_ERR_*. */
static inline hl_i32 hl_payload_str(const char *path, char *dst, hl_i32 dst_len) {
    return hookline_payload_str(path, hl_strlen(path), dst, dst_len);
}

/* As hl_payload_str, for the JSON text of any value at `path` ("" = the whole payload). */
static inline hl_i32 hl_payload_json(const char *path, char *dst, hl_i32 dst_len) {
    return hookline_payload_json(path, hl_strlen(path), dst, dst_len);
}

/* Write a NUL-terminated line to the gateway's log (rate-limited by the host). */
static inline void hl_log(hl_i32 level, const char *msg) {
    hookline_log(level, msg, hl_strlen(msg));
}

/* ---- Exports ---------------------------------------------------------------------- */

/* Emits the three function exports of ABI v2, wired to
 *   hl_i32 INIT(void)                      -- subscribe; negative refuses loading
 *   hl_i32 ON_EVENT(hl_i32 hook, hl_i32 s) -- route/publish; negative rejects the event
 * A negative result is returned to the host as is (a rejection under both versions'
 * conventions); anything else becomes 0 (accepted under both). So HOOKLINE_RULE_V1
 * (marker hookline_abi_v1) takes the same functions and only changes the marker. */
#define HOOKLINE_RULE(INIT, ON_EVENT) HOOKLINE_RULE_MARKED_(hookline_abi_v2, INIT, ON_EVENT)
#define HOOKLINE_RULE_V1(INIT, ON_EVENT) HOOKLINE_RULE_MARKED_(hookline_abi_v1, INIT, ON_EVENT)

#define HOOKLINE_RULE_MARKED_(MARKER, INIT, ON_EVENT)                                  \
    __attribute__((export_name(#MARKER))) void MARKER(void) {}                          \
    __attribute__((export_name("hookline_init"))) hl_i32 hookline_init(void) {         \
        hl_i32 rc_ = (INIT)();                                                          \
        return rc_ < 0 ? rc_ : 0;                                                       \
    }                                                                                   \
    __attribute__((export_name("hookline_on_event"))) hl_i32 hookline_on_event(         \
        hl_i32 hook_, hl_i32 subscription_) {                                           \
        hl_i32 rc_ = (ON_EVENT)(hook_, subscription_);                                  \
        return rc_ < 0 ? rc_ : 0;                                                       \
    }

#ifdef __cplusplus
}
#endif

#endif /* HOOKLINE_H */
