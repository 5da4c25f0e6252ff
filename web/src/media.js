// Attachments: encrypted in encrypted rooms (AES-CTR per file, as every Matrix client does),
// a thumbnail made in the browser for images, authenticated downloads decrypted locally.
import { encryptAttachment, decryptAttachment } from "matrix-encrypt-attachment";

const THUMB_SIZE = 320;

async function imageSize(file) {
  const bitmap = await createImageBitmap(file);
  const size = { w: bitmap.width, h: bitmap.height, bitmap };
  return size;
}

async function makeThumbnail(bitmap) {
  const scale = Math.min(1, THUMB_SIZE / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const h = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(bitmap, 0, 0, w, h);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return { blob, w, h };
}

async function upload(client, blob, encrypted, onProgress) {
  if (!encrypted) {
    const res = await client.uploadContent(blob, { type: blob.type, progressHandler: onProgress });
    return { url: res.content_uri };
  }
  const { data, info } = await encryptAttachment(await blob.arrayBuffer());
  const res = await client.uploadContent(new Blob([data]), {
    type: "application/octet-stream",
    progressHandler: onProgress,
  });
  return { file: { ...info, url: res.content_uri, mimetype: blob.type } };
}

export async function sendFile(client, roomId, file, onProgress) {
  const encrypted = Boolean(client.getRoom(roomId)?.hasEncryptionStateEvent());
  const isImage = file.type.startsWith("image/");
  const content = { body: file.name, msgtype: isImage ? "m.image" : "m.file", info: { mimetype: file.type, size: file.size } };
  if (isImage) {
    const { w, h, bitmap } = await imageSize(file);
    Object.assign(content.info, { w, h });
    const thumb = await makeThumbnail(bitmap);
    const t = await upload(client, thumb.blob, encrypted, () => {});
    content.info.thumbnail_info = { w: thumb.w, h: thumb.h, mimetype: "image/png", size: thumb.blob.size };
    if (t.file) content.info.thumbnail_file = t.file;
    else content.info.thumbnail_url = t.url;
  }
  const main = await upload(client, file, encrypted, onProgress);
  Object.assign(content, main);
  await client.sendMessage(roomId, content);
}

function mediaPath(mxc) {
  const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(mxc || "");
  if (!m) throw new Error("not a media address");
  return `${m[1]}/${encodeURIComponent(m[2])}`;
}

async function fetchBytes(client, mxc) {
  const res = await fetch(`${client.baseUrl}/_matrix/client/v1/media/download/${mediaPath(mxc)}`, {
    headers: { Authorization: `Bearer ${client.getAccessToken()}` },
  });
  if (!res.ok) throw new Error(`download failed (${res.status})`);
  return res.arrayBuffer();
}

// A blob of an attachment: `file` (encrypted) or `url` (plain) of an event's content.
export async function fetchAttachment(client, file, url, mimetype) {
  if (file) {
    const plain = await decryptAttachment(await fetchBytes(client, file.url), file);
    return new Blob([plain], { type: file.mimetype || mimetype || "application/octet-stream" });
  }
  return new Blob([await fetchBytes(client, url)], { type: mimetype || "application/octet-stream" });
}

export async function thumbnailBlob(client, content) {
  const info = content.info || {};
  if (info.thumbnail_file) return fetchAttachment(client, info.thumbnail_file, null, "image/png");
  if (info.thumbnail_url) return fetchAttachment(client, null, info.thumbnail_url, info.thumbnail_info?.mimetype);
  return fetchAttachment(client, content.file, content.url, info.mimetype);
}
