// Video jobs from create to their end: bounded memory, a deadline, exactly one end each.

const ENDS = new Set(["succeeded", "failed", "cancelled"]);
export const TIMED_OUT = "timed_out";

type OnEnd = (labels: readonly string[], status: string, seconds: number) => void;

export class VideoJobs {
  private readonly open = new Map<unknown, { start: number; labels: readonly string[] }>();
  private readonly ended = new Set<unknown>();

  constructor(
    private readonly onEnd: OnEnd,
    readonly maxOpen = 1000,
    readonly timeoutSeconds = 1800,
  ) {}

  /** Note a job's (normalised) status; returns the end status when this update ended it. */
  update(id: unknown, status: string | undefined, labels: readonly string[]): string | undefined {
    const now = performance.now() / 1000;
    this.expire(now);
    const entry = this.open.get(id);
    if (entry === undefined && this.ended.has(id)) return undefined;
    if (status !== undefined && ENDS.has(status)) {
      const { start, labels: at } = entry ?? { start: now, labels };
      this.open.delete(id);
      this.remember(id);
      this.onEnd(at, status, now - start);
      return status;
    }
    if (entry === undefined) {
      this.open.set(id, { start: now, labels });
      while (this.open.size > this.maxOpen) {
        const [oldId, old] = this.open.entries().next().value as [unknown, { start: number; labels: readonly string[] }];
        this.open.delete(oldId);
        this.remember(oldId);
        this.onEnd(old.labels, TIMED_OUT, now - old.start);
      }
    }
    return undefined;
  }

  /** End an open job now (the caller gave up waiting); false when it was not open. */
  end(id: unknown, status = TIMED_OUT): boolean {
    const entry = this.open.get(id);
    if (entry === undefined) return false;
    this.open.delete(id);
    this.remember(id);
    this.onEnd(entry.labels, status, performance.now() / 1000 - entry.start);
    return true;
  }

  private expire(now: number): void {
    for (const [id, entry] of this.open) {
      if (now - entry.start < this.timeoutSeconds) break;
      this.open.delete(id);
      this.remember(id);
      this.onEnd(entry.labels, TIMED_OUT, now - entry.start);
    }
  }

  private remember(id: unknown): void {
    this.ended.add(id);
    if (this.ended.size > this.maxOpen) this.ended.delete(this.ended.values().next().value);
  }
}
