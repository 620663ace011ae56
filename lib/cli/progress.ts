/**
 * Progress of a long operation on the terminal: a redrawn bar on a TTY, one plain line per
 * change (at most one a second) otherwise, so logs of scripted runs stay readable.
 */
export interface ProgressView {
  done: number;
  total: number;
  records?: number;
  step?: string;
}

const BAR_WIDTH = 30;
/** Plain (non-TTY) lines at most this often, plus one whenever the step changes and at the end. */
const LINE_EVERY_MS = 1000;

export class ProgressPrinter {
  private lastLineMs = 0;
  private lastStep: string | undefined;
  private drawn = false;

  constructor(private readonly label: string, private readonly out: NodeJS.WriteStream = process.stdout) {}

  update(v: ProgressView): void {
    const pct = v.total > 0 ? Math.min(100, Math.floor((100 * v.done) / v.total)) : 0;
    const tail = `${v.done}/${v.total}${v.records ? `, ${v.records} records` : ''}${v.step ? `  ${v.step}` : ''}`;
    if (this.out.isTTY) {
      const filled = Math.round((BAR_WIDTH * pct) / 100);
      this.out.write(`\r\x1b[2K${this.label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${String(pct).padStart(3)}% ${tail}`);
      this.drawn = true;
      return;
    }
    const now = Date.now();
    if (now - this.lastLineMs < LINE_EVERY_MS && v.step === this.lastStep && v.done < v.total) return;
    this.lastLineMs = now;
    this.lastStep = v.step;
    this.out.write(`${this.label}: ${pct}% ${tail}\n`);
  }

  /** Ends the bar's line (TTY) and prints the final line. */
  end(line: string): void {
    if (this.drawn) this.out.write('\n');
    this.out.write(`${line}\n`);
  }
}
