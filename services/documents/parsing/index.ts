/**
 * Document parsing: bytes in, structured text blocks out.
 *
 * Pure except for PDF, which runs pdf.js (through `unpdf`) in a short-lived worker thread: a
 * hostile PDF can spin or balloon memory, and a worker can be given a deadline and a heap limit
 * (and pdf.js is ESM-only, which a worker loads natively whatever runs this module).
 *
 * Formats are recognised by content first (magic bytes), then by extension and declared type.
 */
import { isUtf8 } from 'node:buffer';
import { Worker } from 'node:worker_threads';
import { inflateRawSync } from 'node:zlib';
import { Parser } from 'htmlparser2';
import mammoth from 'mammoth';
import { AppError } from '../../core/errors';

export type DocumentFormat = 'text' | 'markdown' | 'html' | 'pdf' | 'docx';
export type BlockKind = 'heading' | 'paragraph' | 'list' | 'code' | 'table';

export interface Block {
  kind: BlockKind;
  text: string;
  /** Heading level 1-6, for headings only. */
  level?: number;
  /** 1-based page number, for PDF only. */
  page?: number;
}

export interface ParsedDocument {
  format: DocumentFormat;
  blocks: Block[];
}

export interface ParseInput {
  filename: string;
  bytes: Buffer;
  /** The Content-Type the client sent, if any; a hint, never trusted over the content. */
  declaredType?: string;
}

export type DocumentParseErrorCode =
  | 'unsupported_type'
  | 'empty'
  | 'encrypted'
  | 'corrupt'
  | 'image_only'
  | 'too_large_unpacked'
  | 'invalid_encoding';

/** 415 for a type we do not read; 422 for a supported type whose content we cannot use. */
export class DocumentParseError extends AppError {
  constructor(
    readonly code: DocumentParseErrorCode,
    readonly reason: string,
  ) {
    super(
      code === 'unsupported_type' ? 415 : 422,
      code === 'unsupported_type' ? 'Unsupported media type' : 'Unreadable document',
      reason,
      { code },
    );
  }
}

export interface ParseOptions {
  /** Upper bound on the sum of a DOCX's uncompressed entry sizes. Default 50 MiB. */
  maxUnpackedBytes?: number;
  /** Deadline for reading one PDF. Default 60 s. */
  pdfTimeoutMs?: number;
}

const DEFAULT_MAX_UNPACKED = 50 * 1024 * 1024;
const DEFAULT_PDF_TIMEOUT_MS = 60_000;
const MAX_ZIP_ENTRIES = 10_000;

// ---------------------------------------------------------------------------------------------
// Sniffing
// ---------------------------------------------------------------------------------------------

const MARKDOWN_EXTS = new Set(['md', 'markdown', 'mdown', 'mkd', 'mkdn']);
const HTML_EXTS = new Set(['html', 'htm', 'xhtml']);
const TEXT_EXTS = new Set(['txt', 'text', 'log', 'csv', 'tsv', 'rst', 'adoc', 'asciidoc', 'org']);

/** Binary signatures we recognise only to name them in the refusal. */
const KNOWN_BINARY: { magic: number[]; name: string }[] = [
  { magic: [0x89, 0x50, 0x4e, 0x47], name: 'a PNG image' },
  { magic: [0xff, 0xd8, 0xff], name: 'a JPEG image' },
  { magic: [0x47, 0x49, 0x46, 0x38], name: 'a GIF image' },
  { magic: [0x49, 0x49, 0x2a, 0x00], name: 'a TIFF image' },
  { magic: [0x4d, 0x4d, 0x00, 0x2a], name: 'a TIFF image' },
  { magic: [0x1f, 0x8b], name: 'a gzip archive' },
  { magic: [0x7b, 0x5c, 0x72, 0x74, 0x66], name: 'an RTF document' },
  { magic: [0x7f, 0x45, 0x4c, 0x46], name: 'an executable' },
  { magic: [0x4d, 0x5a], name: 'an executable' },
];
const OLE_MAGIC = [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];
const ENCRYPTED_PACKAGE_UTF16 = Buffer.from('EncryptedPackage', 'utf16le');

function startsWith(bytes: Buffer, magic: number[], at = 0): boolean {
  if (bytes.length < at + magic.length) return false;
  return magic.every((b, i) => bytes[at + i] === b);
}

function extensionOf(filename: string): string {
  const base = filename.split(/[\\/]/).pop() ?? '';
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

function mimeOf(declaredType: string | undefined): string {
  return (declaredType ?? '').split(';')[0]!.trim().toLowerCase();
}

const DOCX_MIME = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';

function looksLikeHtml(head: string): boolean {
  return /^\s*(?:<\?xml[^>]*>\s*)?(?:<!--[\s\S]*?-->\s*)*<(?:!doctype\s+html|html[\s>])/i.test(head);
}

/**
 * Decides the format from the first bytes, the name and the declared type, without parsing.
 * Throws `DocumentParseError` ('empty', 'unsupported_type', 'invalid_encoding', or 'corrupt' when
 * the name promises a PDF or DOCX that the content is not) so an upload can be refused early.
 */
export function sniffFormat(filename: string, bytes: Buffer, declaredType?: string): DocumentFormat {
  const ext = extensionOf(filename);
  const mime = mimeOf(declaredType);
  if (bytes.length === 0) throw new DocumentParseError('empty', 'The file is empty.');

  // PDF readers accept the header anywhere in the first KiB.
  const pdfAt = bytes.subarray(0, 1024).indexOf('%PDF-');
  if (pdfAt !== -1) return 'pdf';

  if (startsWith(bytes, ZIP_MAGIC)) {
    let names: string[];
    try {
      names = readZipDirectory(bytes).map((e) => e.name);
    } catch {
      if (ext === 'docx') throw new DocumentParseError('corrupt', 'The Word document is damaged: its ZIP structure cannot be read.');
      throw new DocumentParseError('unsupported_type', 'The file is a damaged ZIP archive, not a supported document.');
    }
    if (names.includes('word/document.xml')) return 'docx';
    if (ext === 'docx') throw new DocumentParseError('corrupt', 'The file is named .docx but holds no Word document body (word/document.xml).');
    throw new DocumentParseError('unsupported_type', 'The file is a ZIP archive that is not a Word (.docx) document. Supported: text, Markdown, HTML, PDF, DOCX.');
  }

  if (startsWith(bytes, OLE_MAGIC)) {
    // Password-protected OOXML files are OLE containers holding an `EncryptedPackage` stream.
    if ((ext === 'docx' || mime === DOCX_MIME) && bytes.indexOf(ENCRYPTED_PACKAGE_UTF16) !== -1) {
      throw new DocumentParseError('encrypted', 'The Word document is password-protected. Remove the password and upload it again.');
    }
    throw new DocumentParseError(
      'unsupported_type',
      'The file is a legacy Microsoft Office document (.doc, .xls or .ppt) or an encrypted Office file. Save it as .docx (without a password) and upload it again.',
    );
  }

  for (const known of KNOWN_BINARY) {
    if (startsWith(bytes, known.magic)) {
      throw new DocumentParseError('unsupported_type', `The file is ${known.name}, which is not supported. Supported: text, Markdown, HTML, PDF, DOCX.`);
    }
  }

  if (ext === 'pdf' || mime === 'application/pdf') {
    throw new DocumentParseError('corrupt', 'The file is named as a PDF but does not start like one (no %PDF- header).');
  }
  if (ext === 'docx' || mime === DOCX_MIME) {
    throw new DocumentParseError('corrupt', 'The file is named as a Word document but is not a ZIP-based .docx file.');
  }

  // From here on the content must be text.
  if (startsWith(bytes, [0xff, 0xfe]) || startsWith(bytes, [0xfe, 0xff])) {
    throw new DocumentParseError('invalid_encoding', 'The file is UTF-16 text. Save it as UTF-8 and upload it again.');
  }
  if (bytes.indexOf(0) !== -1) {
    throw new DocumentParseError('unsupported_type', 'The file is binary (it contains NUL bytes), not text. Supported: text, Markdown, HTML, PDF, DOCX.');
  }
  if (!isUtf8(bytes)) {
    throw new DocumentParseError('invalid_encoding', 'The file is not valid UTF-8 text. Save it as UTF-8 and upload it again.');
  }

  const head = bytes.subarray(0, 2048).toString('utf8').replace(/^\uFEFF/, '');
  if (looksLikeHtml(head)) return 'html';
  if (HTML_EXTS.has(ext)) return 'html';
  if (MARKDOWN_EXTS.has(ext)) return 'markdown';
  if (TEXT_EXTS.has(ext)) return 'text';
  if (mime === 'text/html' || mime === 'application/xhtml+xml') return 'html';
  if (mime === 'text/markdown' || mime === 'text/x-markdown') return 'markdown';
  if (ext === '' || mime.startsWith('text/')) return 'text';
  throw new DocumentParseError('unsupported_type', `Files of type .${ext} are not supported. Supported: text, Markdown, HTML, PDF, DOCX.`);
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

export async function parseDocument(input: ParseInput, options: ParseOptions = {}): Promise<ParsedDocument> {
  const format = sniffFormat(input.filename, input.bytes, input.declaredType);
  let blocks: Block[];
  switch (format) {
    case 'text':
      blocks = parsePlainText(decodeUtf8(input.bytes));
      break;
    case 'markdown':
      blocks = parseMarkdown(decodeUtf8(input.bytes));
      break;
    case 'html':
      blocks = htmlToBlocks(decodeUtf8(input.bytes));
      break;
    case 'docx':
      blocks = await parseDocx(input.bytes, options.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED);
      break;
    case 'pdf':
      blocks = await parsePdf(input.bytes, options.pdfTimeoutMs ?? DEFAULT_PDF_TIMEOUT_MS);
      break;
    default: {
      const never: never = format;
      throw new Error(`unhandled format ${String(never)}`);
    }
  }
  blocks = blocks.filter((b) => b.text.trim() !== '');
  if (blocks.length === 0) throw new DocumentParseError('empty', 'The document contains no text.');
  return { format, blocks };
}

// ---------------------------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------------------------

/** Control characters other than tab and newline carry no text. */
const CONTROL_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/g;

function decodeUtf8(bytes: Buffer): string {
  return normalizeText(bytes.toString('utf8').replace(/^\uFEFF/, ''));
}

function normalizeText(text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(CONTROL_CHARS, ' ').normalize('NFC');
}

function collapseSpaces(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

// ---------------------------------------------------------------------------------------------
// Plain text
// ---------------------------------------------------------------------------------------------

function parsePlainText(text: string): Block[] {
  const blocks: Block[] = [];
  for (const para of text.split(/\n[ \t]*\n/)) {
    const lines = para
      .split('\n')
      .map((l) => l.trimEnd())
      .filter((l) => l.trim() !== '');
    if (lines.length) blocks.push({ kind: 'paragraph', text: lines.join('\n').trim() });
  }
  return blocks;
}

// ---------------------------------------------------------------------------------------------
// Markdown (CommonMark's block structure, simplified: what matters for search and citations)
// ---------------------------------------------------------------------------------------------

const ATX_HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const SETEXT_H1 = /^ {0,3}=+[ \t]*$/;
const SETEXT_H2 = /^ {0,3}-+[ \t]*$/;
const THEMATIC_BREAK = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const FENCE_OPEN = /^([ \t]*)(`{3,}|~{3,})(.*)$/;
const LIST_ITEM = /^([ \t]*)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
const TABLE_DELIMITER = /^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
const BLOCKQUOTE = /^ {0,3}>[ \t]?/;
const RAW_HIDDEN_HTML_OPEN = /^[ \t]*<(script|style|noscript|template|iframe)\b/i;

/** Removes inline Markdown syntax, keeping the words a reader sees. */
export function stripInlineMarkdown(text: string): string {
  if (!/[`*_[\]<!\\~]/.test(text)) return text;
  return text
    .replace(/`+([^`]+?)`+/g, '$1')
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/\[([^\]]+)\]\((?:[^()\s]|\([^)]*\))*(?:\s+"[^"]*")?\)/g, '$1')
    .replace(/\[([^\]]+)\]\[[^\]]*\]/g, '$1')
    .replace(/<((?:https?|mailto):[^>\s]+)>/g, '$1')
    .replace(/(\*\*|__)(?=\S)([\s\S]+?)(?<=\S)\1/g, '$2')
    .replace(/(?<![\w*])\*(?=[^\s*])([^*]+?)(?<=[^\s*])\*(?![\w*])/g, '$1')
    .replace(/(?<![\w_])_(?=[^\s_])([^_]+?)(?<=[^\s_])_(?![\w_])/g, '$1')
    .replace(/~~(?=\S)([\s\S]+?)(?<=\S)~~/g, '$1')
    .replace(/\\([\\`*_{}[\]()#+\-.!|>~])/g, '$1');
}

function splitTableRow(line: string): string[] {
  let row = line.trim();
  if (row.startsWith('|')) row = row.slice(1);
  if (row.endsWith('|') && !row.endsWith('\\|')) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((c) => stripInlineMarkdown(c.trim()));
}

function parseMarkdown(source: string): Block[] {
  const lines = source.split('\n');
  const blocks: Block[] = [];
  let para: string[] = [];
  let list: string[] | null = null;
  let listBlankPending = false;
  let listOrdered = false;

  const flushPara = (): void => {
    if (para.length) {
      const text = stripInlineMarkdown(collapseSpaces(para.join(' ')));
      if (text) blocks.push({ kind: 'paragraph', text });
      para = [];
    }
  };
  const flushList = (): void => {
    if (list) {
      const items = list.map((i) => stripInlineMarkdown(collapseSpaces(i))).filter((i) => i !== '');
      if (items.length) blocks.push({ kind: 'list', text: items.join('\n') });
      list = null;
      listBlankPending = false;
    }
  };
  const flushAll = (): void => {
    flushPara();
    flushList();
  };

  let i = 0;
  // YAML front matter is metadata, not text.
  if (lines[0] === '---') {
    const end = lines.indexOf('---', 1);
    if (end > 0) i = end + 1;
  }

  for (; i < lines.length; i++) {
    let line = lines[i]!;
    while (BLOCKQUOTE.test(line)) line = line.replace(BLOCKQUOTE, '');

    // HTML comments are invisible when rendered: keep them out of the text.
    if (line.includes('<!--')) {
      let joined = line;
      let j = i;
      while (!/<!--[\s\S]*?-->/.test(joined) && j + 1 < lines.length) joined += '\n' + lines[++j]!;
      if (/<!--[\s\S]*?-->/.test(joined)) {
        line = joined.replace(/<!--[\s\S]*?-->/g, ' ');
        i = j;
        if (line.trim() === '') continue;
      }
    }

    const fence = FENCE_OPEN.exec(line);
    if (fence && !(fence[2]!.startsWith('`') && fence[3]!.includes('`'))) {
      flushAll();
      const marker = fence[2]!;
      const indent = fence[1]!.length;
      const body: string[] = [];
      const closing = new RegExp(`^[ \\t]*${marker[0] === '`' ? '`' : '~'}{${marker.length},}[ \\t]*$`);
      for (i++; i < lines.length && !closing.test(lines[i]!); i++) {
        const l = lines[i]!;
        body.push(l.slice(Math.min(indent, l.length - l.trimStart().length)));
      }
      const text = body.join('\n').replace(/^\n+|\s+$/g, '');
      if (text) blocks.push({ kind: 'code', text });
      continue;
    }

    const hidden = RAW_HIDDEN_HTML_OPEN.exec(line);
    if (hidden) {
      flushAll();
      const close = new RegExp(`</${hidden[1]}\\s*>`, 'i');
      while (!close.test(lines[i]!) && i + 1 < lines.length) i++;
      continue;
    }

    if (line.trim() === '') {
      flushPara();
      if (list) listBlankPending = true;
      continue;
    }

    const atx = ATX_HEADING.exec(line);
    if (atx) {
      flushAll();
      const text = stripInlineMarkdown(collapseSpaces(atx[2] ?? ''));
      if (text) blocks.push({ kind: 'heading', level: atx[1]!.length, text });
      continue;
    }

    if (para.length && !list && (SETEXT_H1.test(line) || SETEXT_H2.test(line))) {
      const text = stripInlineMarkdown(collapseSpaces(para.join(' ')));
      para = [];
      if (text) blocks.push({ kind: 'heading', level: SETEXT_H1.test(line) ? 1 : 2, text });
      continue;
    }

    if (THEMATIC_BREAK.test(line)) {
      flushAll();
      continue;
    }

    const next = lines[i + 1];
    if (!list && line.includes('|') && next !== undefined && TABLE_DELIMITER.test(next) && next.includes('-')) {
      flushAll();
      const rows: string[] = [splitTableRow(line).join(' | ')];
      for (i += 2; i < lines.length && lines[i]!.trim() !== '' && lines[i]!.includes('|'); i++) {
        rows.push(splitTableRow(lines[i]!).join(' | '));
      }
      i--;
      blocks.push({ kind: 'table', text: rows.join('\n') });
      continue;
    }

    const item = LIST_ITEM.exec(line);
    if (item && (list || para.length === 0 || item[3] !== undefined)) {
      flushPara();
      // A top-level item of the other kind (bullet vs ordered) starts a new list.
      const ordered = /\d/.test(item[2]!);
      if (item[1]!.length < 2) {
        if (list && ordered !== listOrdered) flushList();
        listOrdered = ordered;
      }
      if (!list) list = [];
      list.push(item[3] ?? '');
      listBlankPending = false;
      continue;
    }

    if (list) {
      const indented = /^[ \t]{2,}/.test(line);
      if (indented || !listBlankPending) {
        // Continuation of the last item (indented, or a lazy continuation line).
        list[list.length - 1] += ' ' + line.trim();
        listBlankPending = false;
        continue;
      }
      flushList();
    }

    if (para.length === 0 && /^(?: {4}|\t)/.test(line)) {
      // Indented code block.
      const body: string[] = [line.replace(/^(?: {4}|\t)/, '')];
      while (i + 1 < lines.length && (/^(?: {4}|\t)/.test(lines[i + 1]!) || lines[i + 1]!.trim() === '')) {
        body.push(lines[++i]!.replace(/^(?: {4}|\t)/, ''));
      }
      const text = body.join('\n').replace(/\s+$/, '');
      if (text) blocks.push({ kind: 'code', text });
      continue;
    }

    para.push(line.trim());
  }
  flushAll();
  return blocks;
}

// ---------------------------------------------------------------------------------------------
// HTML (also the intermediate form of DOCX)
// ---------------------------------------------------------------------------------------------

/** Never rendered as text, or not meant to be read: dropped with everything inside. */
const SKIPPED_ELEMENTS = new Set([
  'script', 'style', 'noscript', 'template', 'iframe', 'frame', 'frameset', 'object', 'embed',
  'svg', 'canvas', 'head', 'select', 'datalist',
]);
const BLOCK_ELEMENTS = new Set([
  'p', 'div', 'section', 'article', 'main', 'header', 'footer', 'nav', 'aside', 'blockquote',
  'address', 'figure', 'figcaption', 'details', 'summary', 'form', 'fieldset', 'legend', 'dl',
  'dt', 'dd', 'hr', 'body', 'html', 'center', 'caption',
]);
const HEADING_ELEMENTS: Record<string, number> = { h1: 1, h2: 2, h3: 3, h4: 4, h5: 5, h6: 6 };

function isHiddenElement(attribs: Record<string, string>): boolean {
  if ('hidden' in attribs) return true;
  if (attribs['aria-hidden'] === 'true') return true;
  const style = attribs.style;
  return style !== undefined && /(?:display\s*:\s*none|visibility\s*:\s*hidden)/i.test(style);
}

/** Exported for tests and for DOCX, whose text arrives as HTML. */
export function htmlToBlocks(html: string): Block[] {
  const blocks: Block[] = [];
  let skipDepth = 0;
  let inline = '';
  let heading: { level: number; text: string } | null = null;
  let pre: { text: string; depth: number } | null = null;
  let listDepth = 0;
  let listItems: string[] = [];
  let tableDepth = 0;
  let tableRows: string[][] = [];

  const flushInline = (): void => {
    const text = inline
      .split('\n')
      .map(collapseSpaces)
      .filter((l) => l !== '')
      .join('\n');
    inline = '';
    if (!text) return;
    if (listDepth > 0) {
      if (listItems.length === 0) listItems.push('');
      listItems[listItems.length - 1] = collapseSpaces(`${listItems[listItems.length - 1]} ${text}`);
    } else if (tableDepth > 0) {
      const row = tableRows[tableRows.length - 1];
      if (row && row.length) row[row.length - 1] = collapseSpaces(`${row[row.length - 1]} ${text}`);
      else tableRows.push([text]);
    } else {
      blocks.push({ kind: 'paragraph', text });
    }
  };

  const parser = new Parser(
    {
      onopentag(name, attribs) {
        if (skipDepth > 0) {
          skipDepth++;
          return;
        }
        if (SKIPPED_ELEMENTS.has(name) || isHiddenElement(attribs)) {
          skipDepth = 1;
          return;
        }
        if (pre) {
          pre.depth++;
          if (name === 'br') pre.text += '\n';
          return;
        }
        const level = HEADING_ELEMENTS[name];
        if (level !== undefined && listDepth === 0 && tableDepth === 0) {
          flushInline();
          heading = { level, text: '' };
        } else if (name === 'pre' && listDepth === 0 && tableDepth === 0) {
          flushInline();
          pre = { text: '', depth: 1 };
        } else if (name === 'ul' || name === 'ol') {
          flushInline();
          listDepth++;
        } else if (name === 'li' && listDepth > 0) {
          flushInline();
          listItems.push('');
        } else if (name === 'table') {
          flushInline();
          tableDepth++;
        } else if (name === 'tr' && tableDepth > 0) {
          flushInline();
          tableRows.push([]);
        } else if ((name === 'td' || name === 'th') && tableDepth > 0) {
          flushInline();
          if (tableRows.length === 0) tableRows.push([]);
          tableRows[tableRows.length - 1]!.push('');
        } else if (name === 'br') {
          if (heading) heading.text += ' ';
          else inline += '\n';
        } else if (BLOCK_ELEMENTS.has(name) || level !== undefined || name === 'pre') {
          if (heading) heading.text += ' ';
          else flushInline();
        } else if (name === 'img' && attribs.alt) {
          // Alt text is what a reader of the page is told the image says.
          const alt = ` ${attribs.alt} `;
          if (heading) heading.text += alt;
          else inline += alt;
        }
      },
      ontext(data) {
        if (skipDepth > 0) return;
        if (pre) pre.text += data;
        else if (heading) heading.text += data;
        else inline += data;
      },
      onclosetag(name) {
        if (skipDepth > 0) {
          skipDepth--;
          return;
        }
        if (pre) {
          pre.depth--;
          if (pre.depth === 0) {
            const text = pre.text.replace(/^\n+|\s+$/g, '');
            if (text) blocks.push({ kind: 'code', text });
            pre = null;
          }
          return;
        }
        if (heading && HEADING_ELEMENTS[name] !== undefined) {
          const text = collapseSpaces(heading.text);
          if (text) blocks.push({ kind: 'heading', level: heading.level, text });
          heading = null;
        } else if ((name === 'ul' || name === 'ol') && listDepth > 0) {
          flushInline();
          listDepth--;
          if (listDepth === 0) {
            const items = listItems.filter((t) => t !== '');
            if (items.length) {
              if (tableDepth > 0) {
                inline += items.join('; ');
                flushInline();
              } else blocks.push({ kind: 'list', text: items.join('\n') });
            }
            listItems = [];
          }
        } else if (name === 'table' && tableDepth > 0) {
          flushInline();
          tableDepth--;
          if (tableDepth === 0) {
            const rows = tableRows.map((r) => r.map(collapseSpaces).join(' | ')).filter((r) => r.replace(/[|\s]/g, '') !== '');
            if (rows.length) blocks.push({ kind: 'table', text: rows.join('\n') });
            tableRows = [];
          }
        } else if (BLOCK_ELEMENTS.has(name) || name === 'li' || name === 'td' || name === 'th' || name === 'tr') {
          if (heading) heading.text += ' ';
          else flushInline();
        }
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true, recognizeSelfClosing: true },
  );
  parser.write(normalizeText(html));
  parser.end();
  if (heading) {
    const text = collapseSpaces((heading as { text: string }).text);
    if (text) blocks.push({ kind: 'heading', level: (heading as { level: number }).level, text });
  }
  flushInline();
  return blocks;
}

// ---------------------------------------------------------------------------------------------
// ZIP central directory (read before any inflation: the defence against zip bombs)
// ---------------------------------------------------------------------------------------------

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

function readUint64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(v);
}

/** Lists a ZIP's entries from its central directory (ZIP64 aware). Throws on a malformed one. */
export function readZipDirectory(bytes: Buffer): ZipEntry[] {
  const EOCD = 0x06054b50;
  let eocd = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 0xffff); at--) {
    if (bytes.readUInt32LE(at) === EOCD) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw new Error('no end of central directory record');
  let count = bytes.readUInt16LE(eocd + 10);
  let dirOffset = bytes.readUInt32LE(eocd + 16);
  if (count === 0xffff || dirOffset === 0xffffffff) {
    const locator = eocd - 20;
    if (locator < 0 || bytes.readUInt32LE(locator) !== 0x07064b50) throw new Error('missing ZIP64 locator');
    const z64 = readUint64(bytes, locator + 8);
    if (z64 + 56 > bytes.length || bytes.readUInt32LE(z64) !== 0x06064b50) throw new Error('bad ZIP64 record');
    count = readUint64(bytes, z64 + 32);
    dirOffset = readUint64(bytes, z64 + 48);
  }
  if (count > MAX_ZIP_ENTRIES) throw new RangeError(`too many entries (${count})`);
  const entries: ZipEntry[] = [];
  let at = dirOffset;
  for (let n = 0; n < count; n++) {
    if (at + 46 > bytes.length || bytes.readUInt32LE(at) !== 0x02014b50) throw new Error('bad central directory entry');
    const method = bytes.readUInt16LE(at + 10);
    let compressedSize = bytes.readUInt32LE(at + 20);
    let uncompressedSize = bytes.readUInt32LE(at + 24);
    const nameLength = bytes.readUInt16LE(at + 28);
    const extraLength = bytes.readUInt16LE(at + 30);
    const commentLength = bytes.readUInt16LE(at + 32);
    let localHeaderOffset = bytes.readUInt32LE(at + 42);
    const nameEnd = at + 46 + nameLength;
    if (nameEnd + extraLength > bytes.length) throw new Error('truncated central directory');
    const name = bytes.toString('utf8', at + 46, nameEnd);
    // ZIP64 extended information: 64-bit values for the fields saturated at 0xFFFFFFFF.
    for (let x = nameEnd; x + 4 <= nameEnd + extraLength; ) {
      const id = bytes.readUInt16LE(x);
      const size = bytes.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let f = x + 4;
        if (uncompressedSize === 0xffffffff && f + 8 <= x + 4 + size) (uncompressedSize = readUint64(bytes, f)), (f += 8);
        if (compressedSize === 0xffffffff && f + 8 <= x + 4 + size) (compressedSize = readUint64(bytes, f)), (f += 8);
        if (localHeaderOffset === 0xffffffff && f + 8 <= x + 4 + size) localHeaderOffset = readUint64(bytes, f);
      }
      x += 4 + size;
    }
    entries.push({ name, method, compressedSize, uncompressedSize, localHeaderOffset });
    at = nameEnd + extraLength + commentLength;
  }
  return entries;
}

/**
 * Refuses archives that would unpack to more than `limit` bytes: first by the sizes the central
 * directory declares, then by inflating each entry with its declared size as a hard output cap,
 * so an archive that under-declares its sizes is caught before mammoth (JSZip) inflates it freely.
 */
function checkZipBomb(bytes: Buffer, entries: ZipEntry[], limit: number): void {
  const mib = (n: number): string => `${Math.round(n / (1024 * 1024))} MiB`;
  const declared = entries.reduce((sum, e) => sum + e.uncompressedSize, 0);
  if (declared > limit) {
    throw new DocumentParseError(
      'too_large_unpacked',
      `The Word document would unpack to ${Number.isFinite(declared) ? mib(declared) : 'an absurd size'}, more than the ${mib(limit)} allowed.`,
    );
  }
  for (const entry of entries) {
    if (entry.name.endsWith('/') && entry.uncompressedSize === 0) continue;
    const at = entry.localHeaderOffset;
    if (at + 30 > bytes.length || bytes.readUInt32LE(at) !== 0x04034b50) {
      throw new DocumentParseError('corrupt', 'The Word document is damaged: a ZIP entry cannot be found.');
    }
    const start = at + 30 + bytes.readUInt16LE(at + 26) + bytes.readUInt16LE(at + 28);
    const data = bytes.subarray(start, start + entry.compressedSize);
    if (data.length !== entry.compressedSize) throw new DocumentParseError('corrupt', 'The Word document is truncated.');
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.uncompressedSize) throw new DocumentParseError('corrupt', 'The Word document is damaged: inconsistent ZIP sizes.');
    } else if (entry.method === 8) {
      try {
        inflateRawSync(data, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
      } catch (err) {
        if (err instanceof RangeError || (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
          throw new DocumentParseError('too_large_unpacked', 'The Word document holds more data than its ZIP directory declares (a zip bomb); it was refused.');
        }
        throw new DocumentParseError('corrupt', 'The Word document is damaged: a ZIP entry cannot be decompressed.');
      }
    } else {
      throw new DocumentParseError('corrupt', `The Word document uses an unsupported ZIP compression method (${entry.method}).`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// DOCX
// ---------------------------------------------------------------------------------------------

async function parseDocx(bytes: Buffer, maxUnpackedBytes: number): Promise<Block[]> {
  let entries: ZipEntry[];
  try {
    entries = readZipDirectory(bytes);
  } catch (err) {
    if (err instanceof RangeError) throw new DocumentParseError('too_large_unpacked', 'The Word document holds too many files.');
    throw new DocumentParseError('corrupt', 'The Word document is damaged: its ZIP structure cannot be read.');
  }
  checkZipBomb(bytes, entries, maxUnpackedBytes);
  let html: string;
  try {
    const result = await mammoth.convertToHtml(
      { buffer: bytes },
      // Images carry no text; skip base64-encoding them.
      {
        convertImage: mammoth.images.imgElement(async () => ({ src: '' })),
        ignoreEmptyParagraphs: true,
        // A .docx can link images by file path; never let an upload read our disk.
        externalFileAccess: false,
      },
    );
    html = result.value;
  } catch {
    throw new DocumentParseError('corrupt', 'The Word document is damaged or not a valid .docx file.');
  }
  return htmlToBlocks(html);
}

// ---------------------------------------------------------------------------------------------
// PDF
// ---------------------------------------------------------------------------------------------

/** One text run from pdf.js: [text, x, y, fontSize, width, endsLine]. */
type PdfItem = [string, number, number, number, number, 0 | 1];
type PdfWorkerResult =
  | { ok: true; pages: PdfItem[][] }
  | { ok: false; kind: 'encrypted' | 'corrupt'; message: string };

/** Runs inside the worker; plain CommonJS so it needs no compilation. */
const PDF_WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { getDocumentProxy } = require(workerData.unpdfPath);
  let doc;
  try {
    doc = await getDocumentProxy(workerData.bytes, {
      verbosity: 0, isEvalSupported: false, disableFontFace: true, useSystemFonts: false,
    });
  } catch (err) {
    const name = err && err.name;
    parentPort.postMessage({ ok: false, kind: name === 'PasswordException' ? 'encrypted' : 'corrupt', message: String(err && err.message) });
    return;
  }
  const pages = [];
  for (let p = 1; p <= doc.numPages; p++) {
    const page = await doc.getPage(p);
    const content = await page.getTextContent();
    const items = [];
    for (const it of content.items) {
      if (typeof it.str !== 'string') continue;
      const t = it.transform;
      items.push([it.str, t[4], t[5], Math.hypot(t[2], t[3]) || it.height || 0, it.width || 0, it.hasEOL ? 1 : 0]);
    }
    pages.push(items);
    page.cleanup();
  }
  await doc.destroy();
  parentPort.postMessage({ ok: true, pages });
})().catch((err) => parentPort.postMessage({ ok: false, kind: 'corrupt', message: String(err && err.message || err) }));
`;

function extractPdfItems(bytes: Buffer, timeoutMs: number): Promise<PdfWorkerResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(PDF_WORKER_SOURCE, {
      eval: true,
      workerData: { unpdfPath: require.resolve('unpdf'), bytes: new Uint8Array(bytes) },
      resourceLimits: { maxOldGenerationSizeMb: 512 },
      stdout: true,
      stderr: true,
    });
    // pdf.js is told to be silent; drain anything it prints rather than interleave it with our logs.
    worker.stdout.resume();
    worker.stderr.resume();
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      fn();
    };
    const timer = setTimeout(
      () => finish(() => reject(new DocumentParseError('corrupt', `The PDF could not be read within ${Math.round(timeoutMs / 1000)} s.`))),
      timeoutMs,
    );
    worker.on('message', (msg: PdfWorkerResult) => finish(() => resolve(msg)));
    worker.on('error', (err) =>
      finish(() =>
        reject(
          (err as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? new DocumentParseError('corrupt', 'The PDF needs too much memory to read.')
            : new DocumentParseError('corrupt', 'The PDF is damaged and cannot be read.'),
        ),
      ),
    );
    worker.on('exit', () => finish(() => reject(new DocumentParseError('corrupt', 'The PDF reader stopped unexpectedly.'))));
  });
}

async function parsePdf(bytes: Buffer, timeoutMs: number): Promise<Block[]> {
  const result = await extractPdfItems(bytes, timeoutMs);
  if (!result.ok) {
    if (result.kind === 'encrypted') {
      throw new DocumentParseError('encrypted', 'The PDF is password-protected. Remove the password and upload it again.');
    }
    throw new DocumentParseError('corrupt', 'The PDF is damaged and cannot be read.');
  }
  if (result.pages.length === 0) throw new DocumentParseError('empty', 'The PDF has no pages.');
  const blocks = pdfPagesToBlocks(result.pages);
  if (blocks.length === 0) {
    throw new DocumentParseError(
      'image_only',
      'The PDF has no text layer (it looks scanned or made of images). Run it through OCR and upload it again.',
    );
  }
  return blocks;
}

interface PdfLine {
  text: string;
  y: number;
  size: number;
}

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  // The lower median: paragraph gaps are the outliers, and they are larger.
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

function pdfLines(items: PdfItem[]): PdfLine[] {
  const lines: PdfLine[] = [];
  let current: (PdfLine & { endX: number }) | null = null;
  let breakAfter = false;
  for (const [raw, x, y, size, width, eol] of items) {
    const str = raw.replace(CONTROL_CHARS, ' ');
    const newLine = !current || breakAfter || Math.abs(y - current.y) > Math.max(1, 0.5 * (size || current.size));
    if (newLine) {
      if (current && current.text.trim()) lines.push(current);
      current = { text: str, y, size, endX: x + width };
    } else if (current) {
      const gap = x - current.endX;
      if (gap > 0.2 * Math.max(size, 1) && !/\s$/.test(current.text) && !/^\s/.test(str)) current.text += ' ';
      current.text += str;
      current.endX = x + width;
      if (str.trim()) current.size = Math.max(current.size, size);
    }
    breakAfter = eol === 1;
  }
  if (current && current.text.trim()) lines.push(current);
  return lines.map((l) => ({ text: collapseSpaces(l.text), y: l.y, size: l.size }));
}

/** Lines to paragraphs and headings: vertical gaps split paragraphs, larger type marks headings. */
function pdfPagesToBlocks(pages: PdfItem[][]): Block[] {
  const pageLines = pages.map(pdfLines);
  const sizeWeights = new Map<number, number>();
  for (const lines of pageLines) {
    for (const l of lines) {
      const key = Math.round(l.size * 2) / 2;
      sizeWeights.set(key, (sizeWeights.get(key) ?? 0) + l.text.length);
    }
  }
  let bodySize = 0;
  let best = -1;
  for (const [size, weight] of sizeWeights) {
    if (weight > best) (best = weight), (bodySize = size);
  }
  const isHeadingSize = (size: number): boolean => bodySize > 0 && size >= bodySize * 1.2;
  const headingSizes = [...sizeWeights.keys()].filter(isHeadingSize).sort((a, b) => b - a);
  const levelOf = (size: number): number => Math.min(6, headingSizes.indexOf(Math.round(size * 2) / 2) + 1 || 1);

  const blocks: Block[] = [];
  pageLines.forEach((lines, p) => {
    const page = p + 1;
    // Line spacing of body text on this page (headings' gaps would inflate it).
    const gaps: number[] = [];
    for (let i = 1; i < lines.length; i++) {
      const a = lines[i - 1]!;
      const b = lines[i]!;
      const gap = a.y - b.y;
      if (gap > 0 && !isHeadingSize(a.size) && !isHeadingSize(b.size)) gaps.push(gap);
    }
    const leading = median(gaps) || bodySize * 1.2;
    let para: string[] = [];
    let heading: { text: string[]; size: number } | null = null;
    const flush = (): void => {
      if (para.length) {
        blocks.push({ kind: 'paragraph', text: joinPdfLines(para), page });
        para = [];
      }
      if (heading) {
        blocks.push({ kind: 'heading', text: joinPdfLines(heading.text), level: levelOf(heading.size), page });
        heading = null;
      }
    };
    let prev: PdfLine | null = null;
    for (const line of lines) {
      const headingLine = isHeadingSize(line.size) && line.text.length <= 200;
      const gap = prev ? prev.y - line.y : 0;
      const sameHeading = heading !== null && headingLine && Math.abs((heading as { size: number }).size - line.size) < 0.5 && gap > 0 && gap <= line.size * 1.6;
      if (headingLine) {
        if (!sameHeading) flush();
        if (heading) (heading as { text: string[] }).text.push(line.text);
        else heading = { text: [line.text], size: line.size };
      } else {
        if (heading) flush();
        const newParagraph = prev !== null && (gap <= 0 || gap > leading * 1.45);
        if (newParagraph) flush();
        para.push(line.text);
      }
      prev = line;
    }
    flush();
  });
  return blocks;
}

/** Joins wrapped lines, undoing end-of-line hyphenation ("infor-" + "mation"). */
function joinPdfLines(lines: string[]): string {
  let out = '';
  for (const line of lines) {
    if (out === '') out = line;
    else if (/\p{Ll}-$/u.test(out) && /^\p{Ll}/u.test(line)) out = out.slice(0, -1) + line;
    else out += ' ' + line;
  }
  return out.trim();
}
