import { EventEmitter } from "events";

export interface Job {
  id: string;
  run(): Promise<void>;
}

export type Status = "queued" | "running" | "done";

export enum Priority {
  Low,
  High,
}

export class Queue extends EventEmitter {
  private jobs: Job[] = [];

  constructor(private readonly concurrency: number) {
    super();
  }

  push(job: Job): void {
    this.jobs.push(job);
    this.emit("queued", job.id);
  }

  async drain(): Promise<number> {
    let done = 0;
    while (this.jobs.length > 0) {
      const batch = this.jobs.splice(0, this.concurrency);
      await Promise.all(batch.map((j) => j.run()));
      done += batch.length;
    }
    return done;
  }

  private onError = (err: Error): void => {
    console.error(err);
  };
}

export namespace Utils {
  export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

export const retry = async <T>(fn: () => Promise<T>, times = 3): Promise<T> => {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= times) throw e;
    }
  }
};
