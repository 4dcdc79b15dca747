import { trace, Span } from "@opentelemetry/api";

const tracer = trace.getTracer("vault");

export interface Entry {
  account: string;
  cents: number;
}

export class Ledger {
  private entries: Entry[] = [];

  post(entry: Entry): number {
    this.entries.push(entry);
    return this.entries.length;
  }

  async settle(account: string): Promise<number> {
    return tracer.startActiveSpan("Ledger.settle", async (span: Span) => {
      const sum = this.entries
        .filter((e) => e.account === account)
        .reduce((s, e) => s + e.cents, 0);
      span.end();
      return sum;
    });
  }

  onClose = (reason: string): void => {
    console.log(`closing: ${reason}`);
  };
}

export function openLedger(): Ledger {
  return new Ledger();
}
