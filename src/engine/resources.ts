import type { StageResources } from './resolve.ts';

export interface Grant {
  cpu: number;
  gpu: number;
  memory: number;
  /** Concrete GPU ordinals assigned to the holder (e.g. for CUDA_VISIBLE_DEVICES). */
  gpuIds: number[];
}

/**
 * Counts cpu, gpu and memory tokens. Requests are served first come, first served; a request
 * larger than the whole capacity is clamped to it (so it can run alone) rather than deadlocking.
 */
export class ResourcePool {
  private free: { cpu: number; gpu: number; memory: number };
  private readonly freeGpuIds: number[];
  private readonly waiting: Array<{ req: StageResources; grant: (g: Grant) => void }> = [];

  constructor(readonly capacity: { cpu: number; gpu: number; memory: number }) {
    this.free = { ...capacity };
    this.freeGpuIds = Array.from({ length: capacity.gpu }, (_, i) => i);
  }

  clamp(req: StageResources): StageResources {
    return {
      cpu: Math.min(Math.max(req.cpu, 0), this.capacity.cpu),
      gpu: Math.min(Math.max(req.gpu, 0), this.capacity.gpu),
      memory: Math.min(Math.max(req.memory, 0), this.capacity.memory),
    };
  }

  acquire(request: StageResources): Promise<Grant> {
    const req = this.clamp(request);
    return new Promise((grant) => {
      this.waiting.push({ req, grant });
      this.pump();
    });
  }

  release(g: Grant): void {
    this.free.cpu += g.cpu;
    this.free.gpu += g.gpu;
    this.free.memory += g.memory;
    this.freeGpuIds.push(...g.gpuIds);
    this.freeGpuIds.sort((a, b) => a - b);
    this.pump();
  }

  async withResources<T>(req: StageResources, fn: (g: Grant) => Promise<T>): Promise<T> {
    const g = await this.acquire(req);
    try {
      return await fn(g);
    } finally {
      this.release(g);
    }
  }

  private pump(): void {
    while (this.waiting.length > 0) {
      const head = this.waiting[0]!;
      const { req } = head;
      if (req.cpu > this.free.cpu || req.gpu > this.free.gpu || req.memory > this.free.memory) return;
      this.waiting.shift();
      this.free.cpu -= req.cpu;
      this.free.gpu -= req.gpu;
      this.free.memory -= req.memory;
      head.grant({ ...req, gpuIds: this.freeGpuIds.splice(0, req.gpu) });
    }
  }
}
