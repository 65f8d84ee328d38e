import { AppError } from '../../core/errors';
import { buildDocx, buildZip } from '../../../test/support/zip';
import { DocumentParseError, htmlToBlocks, parseDocument, readZipDirectory, sniffFormat } from './index';
import type { DocumentParseErrorCode, ParsedDocument } from './index';

// ---------------------------------------------------------------------------------------------
// Fixtures made here: PDFs written by hand with exact xref offsets.
// ---------------------------------------------------------------------------------------------

interface PdfLineSpec {
  text: string;
  size?: number;
  /** Extra space above the line, in points (a paragraph break). */
  gapBefore?: number;
}

function pdfString(s: string): string {
  return `(${s.replace(/[\\()]/g, (c) => `\\${c}`)})`;
}

/** A PDF with one page per entry; a page with no lines has no text operators at all. */
function buildPdf(pages: PdfLineSpec[][], opts: { trailerExtra?: string; imagePages?: boolean } = {}): Buffer {
  const objects: string[] = [];
  const add = (body: string): number => objects.push(body);
  add('<< /Type /Catalog /Pages 2 0 R >>');
  add(''); // pages, filled below
  add('<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>');
  const image = add('<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray /BitsPerComponent 8 /Length 4 >>\nstream\n\u0000\u00ff\u00ff\u0000\nendstream');
  const kids: number[] = [];
  for (const lines of pages) {
    let content = '';
    if (lines.length) {
      let y = 740;
      for (const line of lines) {
        const size = line.size ?? 12;
        y -= size * 1.2 + (line.gapBefore ?? 0);
        content += `BT /F1 ${size} Tf 72 ${y.toFixed(2)} Td ${pdfString(line.text)} Tj ET\n`;
      }
    } else if (opts.imagePages) {
      content = `q 200 0 0 200 100 400 cm /Im1 Do Q\n`;
    }
    const contentId = add(`<< /Length ${Buffer.byteLength(content, 'latin1')} >>\nstream\n${content}\nendstream`);
    kids.push(
      add(
        `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> /XObject << /Im1 ${image} 0 R >> >> /Contents ${contentId} 0 R >>`,
      ),
    );
  }
  objects[1] = `<< /Type /Pages /Kids [${kids.map((k) => `${k} 0 R`).join(' ')}] /Count ${kids.length} >>`;
  let out = '%PDF-1.4\n%\u00e2\u00e3\u00cf\u00d3\n';
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, 'latin1'));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, 'latin1');
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const o of offsets) out += `${String(o).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R${opts.trailerExtra ?? ''} >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

const ENCRYPT_TRAILER =
  ' /Encrypt << /Filter /Standard /V 1 /R 2 /Length 40 /P -44' +
  ' /O <6a5d9c5b7e1f3a2b4c6d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d>' +
  ' /U <1f2e3d4c5b6a79880f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978> >>' +
  ' /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]';

async function parseError(input: Parameters<typeof parseDocument>[0]): Promise<DocumentParseError> {
  try {
    await parseDocument(input);
  } catch (err) {
    if (err instanceof DocumentParseError) return err;
    throw err;
  }
  throw new Error('expected a DocumentParseError');
}

function sniffError(filename: string, bytes: Buffer, declaredType?: string): DocumentParseError {
  try {
    sniffFormat(filename, bytes, declaredType);
  } catch (err) {
    if (err instanceof DocumentParseError) return err;
    throw err;
  }
  throw new Error('expected a DocumentParseError');
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
const texts = (doc: ParsedDocument): string[] => doc.blocks.map((b) => b.text);

// ---------------------------------------------------------------------------------------------

describe('sniffFormat', () => {
  it.each<[string, string, Buffer, string | undefined]>([
    ['report.pdf', 'pdf', buildPdf([[{ text: 'x' }]]), undefined],
    ['report.txt', 'pdf', buildPdf([[{ text: 'x' }]]), undefined],
    ['letter.docx', 'docx', buildDocx(['Hi']), undefined],
    ['letter.bin', 'docx', buildDocx(['Hi']), undefined],
    ['page.html', 'html', utf8('<p>hi</p>'), undefined],
    ['page.txt', 'html', utf8('\uFEFF  <!DOCTYPE html><html><body>x</body></html>'), undefined],
    ['page.md', 'html', utf8('<html lang="en"><body>x</body></html>'), undefined],
    ['notes.md', 'markdown', utf8('# Title'), undefined],
    ['notes.markdown', 'markdown', utf8('# Title'), undefined],
    ['notes.txt', 'text', utf8('# not a heading in plain text'), undefined],
    ['README', 'text', utf8('hello'), undefined],
    ['upload', 'markdown', utf8('# Title'), 'text/markdown; charset=utf-8'],
    ['data.csv', 'text', utf8('a,b\n1,2'), undefined],
    ['notes.weird', 'text', utf8('hello'), 'text/plain'],
  ])('%s is detected as %s', (filename, expected, bytes, declared) => {
    expect(sniffFormat(filename, bytes, declared)).toBe(expected);
  });

  it.each<[string, DocumentParseErrorCode, Buffer]>([
    ['empty.txt', 'empty', Buffer.alloc(0)],
    ['photo.png', 'unsupported_type', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0])],
    ['photo.txt', 'unsupported_type', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10])],
    ['sheet.xlsx', 'unsupported_type', buildZip([{ name: 'xl/workbook.xml', data: '<workbook/>' }])],
    ['legacy.doc', 'unsupported_type', Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), Buffer.alloc(512)])],
    ['binary.txt', 'unsupported_type', Buffer.from('abc\u0000def', 'latin1')],
    ['data.json', 'unsupported_type', utf8('{"a":1}')],
    ['latin1.txt', 'invalid_encoding', Buffer.from('caf\u00e9 cr\u00e8me', 'latin1')],
    ['utf16.txt', 'invalid_encoding', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('hello', 'utf16le')])],
    ['fake.pdf', 'corrupt', utf8('just text')],
    ['fake.docx', 'corrupt', utf8('just text')],
    ['notword.docx', 'corrupt', buildZip([{ name: 'readme.txt', data: 'x' }])],
  ])('%s is refused as %s', (filename, code, bytes) => {
    expect(sniffError(filename, bytes).code).toBe(code);
  });

  it('refuses an unsupported type with 415 and anything else with 422, as problem details', () => {
    const unsupported = sniffError('photo.png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0]));
    expect(unsupported).toBeInstanceOf(AppError);
    expect(unsupported.status).toBe(415);
    expect(unsupported.reason).toMatch(/PNG image/);
    expect(unsupported.extra).toEqual({ code: 'unsupported_type' });
    expect(sniffError('latin1.txt', Buffer.from([0x63, 0xe9])).status).toBe(422);
  });

  it('recognises a password-protected .docx (an OLE container with an EncryptedPackage stream)', () => {
    const ole = Buffer.concat([
      Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]),
      Buffer.alloc(504),
      Buffer.from('EncryptionInfo', 'utf16le'),
      Buffer.from('EncryptedPackage', 'utf16le'),
    ]);
    expect(sniffError('secret.docx', ole).code).toBe('encrypted');
  });

  it('decides the format of a large document from its first bytes and name', () => {
    const big = utf8(`# Title\n\n${'word '.repeat(2_000_000)}`);
    expect(sniffFormat('big.md', big)).toBe('markdown');
  });
});

describe('plain text', () => {
  it('strips the BOM, normalises line ends and splits paragraphs at blank lines', async () => {
    const doc = await parseDocument({ filename: 'a.txt', bytes: utf8('\uFEFFFirst line\r\nstill first.\r\n\r\n  \r\nSecond\u000c paragraph.\n') });
    expect(doc).toEqual({
      format: 'text',
      blocks: [
        { kind: 'paragraph', text: 'First line\nstill first.' },
        { kind: 'paragraph', text: 'Second  paragraph.' },
      ],
    });
  });

  it('refuses a file with only whitespace as empty', async () => {
    expect((await parseError({ filename: 'a.txt', bytes: utf8('\uFEFF \n\n\t\n') })).code).toBe('empty');
  });
});

describe('markdown', () => {
  const source = [
    '---',
    'title: front matter is not text',
    '---',
    '# Guide #',
    '',
    'Intro with **bold**, _em_, `code` and a [link](https://example.com "t").',
    'Soft-wrapped on a second line.',
    '',
    'Install',
    '=======',
    '',
    'Configure',
    '---------',
    '',
    '- first item',
    '- second item',
    '  continued',
    '',
    '1. one',
    '2. two',
    '',
    '```sh',
    '# a comment, not a heading',
    'npm install',
    '```',
    '',
    '| Key | Value |',
    '|-----|------:|',
    '| a   | 1     |',
    '',
    '> quoted text',
    '',
    '<!-- an invisible',
    'comment -->',
    '<script>',
    'steal()',
    '</script>',
    '',
    '***',
    '',
    '###### Deep',
    '',
    '    indented code',
    '',
    'The end.',
  ].join('\n');

  it('keeps headings (ATX and setext), paragraphs, lists, fenced code and tables', async () => {
    const doc = await parseDocument({ filename: 'guide.md', bytes: utf8(source) });
    expect(doc.format).toBe('markdown');
    expect(doc.blocks).toEqual([
      { kind: 'heading', level: 1, text: 'Guide' },
      { kind: 'paragraph', text: 'Intro with bold, em, code and a link. Soft-wrapped on a second line.' },
      { kind: 'heading', level: 1, text: 'Install' },
      { kind: 'heading', level: 2, text: 'Configure' },
      { kind: 'list', text: 'first item\nsecond item continued' },
      { kind: 'list', text: 'one\ntwo' },
      { kind: 'code', text: '# a comment, not a heading\nnpm install' },
      { kind: 'table', text: 'Key | Value\na | 1' },
      { kind: 'paragraph', text: 'quoted text' },
      { kind: 'heading', level: 6, text: 'Deep' },
      { kind: 'code', text: 'indented code' },
      { kind: 'paragraph', text: 'The end.' },
    ]);
  });

  it('never lets HTML comments or script blocks reach the text', async () => {
    const doc = await parseDocument({ filename: 'guide.md', bytes: utf8(source) });
    const all = texts(doc).join('\n');
    expect(all).not.toMatch(/invisible|steal|front matter/);
  });

  it('keeps an unclosed fence as code to the end', async () => {
    const doc = await parseDocument({ filename: 'a.md', bytes: utf8('Text\n\n~~~\ncode\n# still code') });
    expect(doc.blocks).toEqual([
      { kind: 'paragraph', text: 'Text' },
      { kind: 'code', text: 'code\n# still code' },
    ]);
  });
});

describe('html', () => {
  const page = `<!DOCTYPE html>
<html><head><title>Title text</title><style>body { color: red }</style>
<script>var secret = "from head";</script></head>
<body>
  <!-- a comment -->
  <h1>Main &amp; <em>Title</em></h1>
  <p>First paragraph with <b>bold</b>&nbsp;text.<br>After a break.</p>
  <script type="text/javascript">document.write("</div>injected")</script>
  <noscript>Enable JavaScript</noscript>
  <template><p>template text</p></template>
  <iframe src="https://example.com">iframe text</iframe>
  <div hidden>hidden div</div>
  <p style="display: none">invisible paragraph</p>
  <h3>Sub section</h3>
  <ul><li>one</li><li>two<ol><li>two-a</li></ol></li></ul>
  <table><tr><th>Name</th><th>Qty</th></tr><tr><td>Apples</td><td>3</td></tr></table>
  <pre><code>line 1
  line 2</code></pre>
  <div>Trailing <span>inline</span> text <img src="x.png" alt="a diagram"></div>
</body></html>`;

  it('keeps headings h1-h6, paragraphs, lists, tables and preformatted code', async () => {
    const doc = await parseDocument({ filename: 'page.html', bytes: utf8(page) });
    expect(doc.format).toBe('html');
    expect(doc.blocks).toEqual([
      { kind: 'heading', level: 1, text: 'Main & Title' },
      { kind: 'paragraph', text: 'First paragraph with bold text.\nAfter a break.' },
      { kind: 'heading', level: 3, text: 'Sub section' },
      { kind: 'list', text: 'one\ntwo\ntwo-a' },
      { kind: 'table', text: 'Name | Qty\nApples | 3' },
      { kind: 'code', text: 'line 1\n  line 2' },
      { kind: 'paragraph', text: 'Trailing inline text a diagram' },
    ]);
  });

  it('never outputs scripts, styles, noscript, templates, iframes, comments or hidden elements', () => {
    const all = htmlToBlocks(page).map((b) => b.text).join('\n');
    for (const leaked of ['secret', 'color', 'injected', 'Enable JavaScript', 'template text', 'iframe text', 'a comment', 'hidden div', 'invisible', 'Title text']) {
      expect(all).not.toContain(leaked);
    }
  });

  it('treats a page of only scripts as empty', async () => {
    const err = await parseError({ filename: 'x.html', bytes: utf8('<html><script>a()</script><style>p{}</style></html>') });
    expect(err.code).toBe('empty');
  });
});

describe('docx', () => {
  it('reads headings, paragraphs and tables', async () => {
    const bytes = buildDocx([
      { heading: 'Handbook', level: 1 },
      'Welcome to the <company> & team.',
      { heading: 'Leave', level: 2 },
      'You get 25 days of leave.',
      { table: [['Year', 'Days'], ['2025', '25']] },
    ]);
    const doc = await parseDocument({ filename: 'handbook.docx', bytes });
    expect(doc).toEqual({
      format: 'docx',
      blocks: [
        { kind: 'heading', level: 1, text: 'Handbook' },
        { kind: 'paragraph', text: 'Welcome to the <company> & team.' },
        { kind: 'heading', level: 2, text: 'Leave' },
        { kind: 'paragraph', text: 'You get 25 days of leave.' },
        { kind: 'table', text: 'Year | Days\n2025 | 25' },
      ],
    });
  });

  it('refuses a zip bomb by the sizes its central directory declares, before inflating anything', async () => {
    const bomb = buildDocx(['Hi'], [{ name: 'word/media/huge.bin', data: Buffer.alloc(1024), declaredSize: 0xfffffff0 }]);
    expect(readZipDirectory(bomb).find((e) => e.name === 'word/media/huge.bin')?.uncompressedSize).toBe(0xfffffff0);
    const err = await parseError({ filename: 'bomb.docx', bytes: bomb });
    expect(err.code).toBe('too_large_unpacked');
    expect(err.status).toBe(422);
    expect(err.reason).toMatch(/unpack/);
  });

  it('refuses a zip that declares less than it holds', async () => {
    const liar = buildDocx(['Hi'], [{ name: 'word/media/zeros.bin', data: Buffer.alloc(4 * 1024 * 1024), declaredSize: 100 }]);
    const err = await parseError({ filename: 'liar.docx', bytes: liar });
    expect(err.code).toBe('too_large_unpacked');
  });

  it('honours a custom unpacked-size limit', async () => {
    const doc = buildDocx(['Hi'], [{ name: 'word/media/pad.bin', data: Buffer.alloc(200_000) }]);
    await expect(parseDocument({ filename: 'a.docx', bytes: doc }, { maxUnpackedBytes: 100_000 })).rejects.toMatchObject({ code: 'too_large_unpacked' });
    await expect(parseDocument({ filename: 'a.docx', bytes: doc })).resolves.toMatchObject({ format: 'docx' });
  });

  it('reports a damaged document as corrupt', async () => {
    const broken = buildZip([{ name: 'word/document.xml', data: '<w:document><w:body><w:p>' }]);
    expect((await parseError({ filename: 'broken.docx', bytes: broken })).code).toBe('corrupt');

    const good = buildDocx(['Hi']);
    const truncated = good.subarray(0, good.length - 30);
    expect((await parseError({ filename: 'cut.docx', bytes: truncated })).code).toBe('corrupt');

    const garbled = Buffer.from(good);
    const entry = readZipDirectory(good).find((e) => e.name === 'word/document.xml')!;
    garbled.fill(0xff, entry.localHeaderOffset + 60, entry.localHeaderOffset + 60 + Math.min(40, entry.compressedSize - 10));
    expect((await parseError({ filename: 'garbled.docx', bytes: garbled })).code).toBe('corrupt');
  });

  it('reports a password-protected document as encrypted', async () => {
    const ole = Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), Buffer.alloc(100), Buffer.from('EncryptedPackage', 'utf16le')]);
    expect((await parseError({ filename: 'secret.docx', bytes: ole })).code).toBe('encrypted');
  });

  it('reads ZIP64 sizes from the extra field', () => {
    const zip = buildZip([{ name: 'a.txt', data: 'abc', method: 'store' }]);
    // Rewrite the central entry as ZIP64: saturated size, 64-bit value in an extra field.
    const dirOffset = zip.readUInt32LE(zip.length - 22 + 16);
    const central = Buffer.from(zip.subarray(dirOffset, zip.length - 22));
    central.writeUInt32LE(0xffffffff, 24);
    central.writeUInt16LE(12, 30);
    const extra = Buffer.alloc(12);
    extra.writeUInt16LE(0x0001, 0);
    extra.writeUInt16LE(8, 2);
    extra.writeBigUInt64LE(BigInt(2) ** BigInt(40), 4);
    const end = Buffer.from(zip.subarray(zip.length - 22));
    end.writeUInt32LE(central.length + extra.length, 12);
    const rebuilt = Buffer.concat([zip.subarray(0, dirOffset), central, extra, end]);
    expect(readZipDirectory(rebuilt)[0]).toMatchObject({ name: 'a.txt', uncompressedSize: 2 ** 40 });
  });

});

describe('pdf', () => {
  it('keeps text per page, finds headings by type size and joins hyphenated lines', async () => {
    const bytes = buildPdf([
      [
        { text: 'Travel Policy', size: 24 },
        { text: 'Employees book travel through the portal. Receipts are', gapBefore: 8 },
        { text: 'required for every expense over fifty euros; the infor-' },
        { text: 'mation goes to finance.' },
        { text: 'A second paragraph starts after a gap.', gapBefore: 14 },
      ],
      [
        { text: 'Approvals', size: 18 },
        { text: 'Managers approve trips within five days.', gapBefore: 6 },
      ],
    ]);
    const doc = await parseDocument({ filename: 'policy.pdf', bytes });
    expect(doc).toEqual({
      format: 'pdf',
      blocks: [
        { kind: 'heading', level: 1, text: 'Travel Policy', page: 1 },
        {
          kind: 'paragraph',
          text: 'Employees book travel through the portal. Receipts are required for every expense over fifty euros; the information goes to finance.',
          page: 1,
        },
        { kind: 'paragraph', text: 'A second paragraph starts after a gap.', page: 1 },
        { kind: 'heading', level: 2, text: 'Approvals', page: 2 },
        { kind: 'paragraph', text: 'Managers approve trips within five days.', page: 2 },
      ],
    });
  });

  it('reports a PDF without a text layer as image_only', async () => {
    const err = await parseError({ filename: 'scan.pdf', bytes: buildPdf([[], []], { imagePages: true }) });
    expect(err.code).toBe('image_only');
    expect(err.reason).toMatch(/OCR/);
  });

  it('reports a password-protected PDF as encrypted', async () => {
    const err = await parseError({ filename: 'secret.pdf', bytes: buildPdf([[{ text: 'secret' }]], { trailerExtra: ENCRYPT_TRAILER }) });
    expect(err.code).toBe('encrypted');
  });

  it('reports a damaged PDF as corrupt', async () => {
    const err = await parseError({ filename: 'bad.pdf', bytes: utf8('%PDF-1.7\nthis is not a pdf at all') });
    expect(err.code).toBe('corrupt');
  });

  it('gives up on a PDF that takes longer than the deadline', async () => {
    const bytes = buildPdf([[{ text: 'slow' }]]);
    await expect(parseDocument({ filename: 'a.pdf', bytes }, { pdfTimeoutMs: 1 })).rejects.toMatchObject({ code: 'corrupt' });
  });
});
