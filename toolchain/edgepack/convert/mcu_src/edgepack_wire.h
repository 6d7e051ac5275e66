/* edgepack's serial protocol, version 1 (docs/serial-protocol.md): framing and CRC-32 only, no
 * I/O of its own, so that the same code runs on the board and in edgepack's tests.
 * Generated into every microcontroller bundle by edgepack. */
#ifndef EDGEPACK_WIRE_H
#define EDGEPACK_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EP_PROTOCOL_VERSION 1u
#define EP_HEADER_BYTES 8u  /* "EP", type, sequence, u32 payload length */
#define EP_CRC_BYTES 4u

enum ep_type {
  EP_HELLO = 0x01, EP_INFER = 0x02, EP_LOOP = 0x03,
  EP_HELLO_OK = 0x81, EP_OUTPUT = 0x82, EP_LOOP_DONE = 0x83,
  EP_ERROR = 0x7E, EP_BOOT = 0x7F
};

enum ep_error { EP_ERR_FRAME = 1, EP_ERR_TYPE = 2, EP_ERR_INPUT_SIZE = 3, EP_ERR_TFLM = 4 };

/* CRC-32 as zlib computes it; chain calls by passing the previous result (start with 0). */
uint32_t ep_crc32(uint32_t crc, const uint8_t *data, size_t n);

/* Write one frame into out[cap]; returns its length, or 0 when it does not fit. */
size_t ep_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t n);

/* A frame decoder fed one byte at a time; buf holds the frame being read. */
typedef struct {
  uint8_t *buf;
  size_t cap;
  size_t have;
  uint32_t length;
} ep_decoder;

void ep_decoder_init(ep_decoder *d, uint8_t *buf, size_t cap);
/* 1: a whole, valid frame is in (ep_frame_type/seq/payload/length); -1: the bytes were not a
 * frame (bad length or CRC; the decoder starts over); 0: more bytes needed. Bytes before a sync
 * pattern are skipped. */
int ep_decode_byte(ep_decoder *d, uint8_t byte);
uint8_t ep_frame_type(const ep_decoder *d);
uint8_t ep_frame_seq(const ep_decoder *d);
const uint8_t *ep_frame_payload(const ep_decoder *d);
uint32_t ep_frame_length(const ep_decoder *d);

void ep_put_u16(uint8_t *p, uint16_t v);
void ep_put_u32(uint8_t *p, uint32_t v);
void ep_put_u64(uint8_t *p, uint64_t v);
uint32_t ep_get_u32(const uint8_t *p);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPACK_WIRE_H */
