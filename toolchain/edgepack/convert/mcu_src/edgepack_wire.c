/* edgepack's serial protocol, version 1: see edgepack_wire.h and docs/serial-protocol.md. */
#include "edgepack_wire.h"

uint32_t ep_crc32(uint32_t crc, const uint8_t *data, size_t n) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void ep_put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

void ep_put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> (8 * i));
}

void ep_put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t ep_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

size_t ep_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t n) {
  size_t total = EP_HEADER_BYTES + (size_t)n + EP_CRC_BYTES;
  if (total > cap) return 0;
  out[0] = 'E';
  out[1] = 'P';
  out[2] = type;
  out[3] = seq;
  ep_put_u32(out + 4, n);
  for (uint32_t i = 0; i < n; ++i) out[EP_HEADER_BYTES + i] = payload[i];
  ep_put_u32(out + EP_HEADER_BYTES + n, ep_crc32(0, out + 2, EP_HEADER_BYTES - 2 + (size_t)n));
  return total;
}

void ep_decoder_init(ep_decoder *d, uint8_t *buf, size_t cap) {
  d->buf = buf;
  d->cap = cap;
  d->have = 0;
  d->length = 0;
}

int ep_decode_byte(ep_decoder *d, uint8_t byte) {
  if (d->have == 0 && byte != 'E') return 0;
  if (d->have == 1 && byte != 'P') {
    d->have = (byte == 'E') ? 1 : 0;
    return 0;
  }
  d->buf[d->have++] = byte;
  if (d->have == EP_HEADER_BYTES) {
    d->length = ep_get_u32(d->buf + 4);
    if ((size_t)d->length + EP_HEADER_BYTES + EP_CRC_BYTES > d->cap) {
      d->have = 0;
      return -1;
    }
  }
  if (d->have < EP_HEADER_BYTES || d->have < EP_HEADER_BYTES + d->length + EP_CRC_BYTES) return 0;
  d->have = 0;
  uint32_t want = ep_get_u32(d->buf + EP_HEADER_BYTES + d->length);
  return ep_crc32(0, d->buf + 2, EP_HEADER_BYTES - 2 + (size_t)d->length) == want ? 1 : -1;
}

uint8_t ep_frame_type(const ep_decoder *d) { return d->buf[2]; }
uint8_t ep_frame_seq(const ep_decoder *d) { return d->buf[3]; }
const uint8_t *ep_frame_payload(const ep_decoder *d) { return d->buf + EP_HEADER_BYTES; }
uint32_t ep_frame_length(const ep_decoder *d) { return d->length; }
