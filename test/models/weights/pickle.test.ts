import { describe, expect, it } from 'vitest';
import { ForbiddenGlobalError, PickleError, unpickle } from '../../../src/models/weights/pickle.ts';
import { PickleWriter } from './pickle-builder.ts';

const enc = (s: string) => new TextEncoder().encode(s);

describe('unpickle: values', () => {
  it('reads ints of every width, floats, None and bools', () => {
    const w = new PickleWriter().proto(2).mark();
    w.int(7).int(300).int(-5).int(2 ** 31 - 1).int(2 ** 40).int(-(2 ** 40)).int(2n ** 70n).int(255).int(-1);
    w.float(0.1).float(-2.5).none().bool(true).bool(false);
    const v = unpickle(w.tuple().stop().bytes());
    expect(v).toEqual([7, 300, -5, 2 ** 31 - 1, 2 ** 40, -(2 ** 40), 2n ** 70n, 255, -1, 0.1, -2.5, null, true, false]);
  });

  it('LONG1 follows two’s complement', () => {
    const v = unpickle(new PickleWriter().proto(2).raw(0x8a, 2, 0xff, 0x7f).raw(0x8a, 1, 0x80).raw(0x8a, 0).tuple3().stop().bytes());
    expect(v).toEqual([32767, -128, 0]);
  });

  it('reads strings and bytes in all their encodings', () => {
    const w = new PickleWriter().proto(4).frame(0).mark();
    w.str('BINUNICODE ü').shortStr('short').str8('eight').shortBytes([1, 2, 3]).binBytes([9]);
    w.raw(0x55, 2, 0x68, 0x69); // SHORT_BINSTRING 'hi'
    const v = unpickle(w.tuple().stop().bytes()) as unknown[];
    expect(v.slice(0, 3)).toEqual(['BINUNICODE ü', 'short', 'eight']);
    expect(v[3]).toEqual(Uint8Array.from([1, 2, 3]));
    expect(v[4]).toEqual(Uint8Array.from([9]));
    expect(v[5]).toBe('hi');
  });

  it('builds lists, tuples, dicts and sets, and memoizes them', () => {
    const w = new PickleWriter().proto(4);
    w.emptyDict().memoize(); // memo 0
    w.str('list').emptyList().memoize().int(1).append().mark().int(2).int(3).appends().setitem(); // memo 1
    w.str('tuple').int(1).int(2).tuple2().setitem();
    w.str('again').raw(0x68, 1).setitem(); // BINGET 1: the same list object
    w.mark().str('d').mark().str('k').none().raw(0x64).setitems(); // DICT opcode inside SETITEMS
    w.str('set').raw(0x8f).mark().int(5).int(6).raw(0x90).setitem();
    const v = unpickle(w.stop().bytes()) as Map<string, unknown>;
    expect(v).toBeInstanceOf(Map);
    expect([...v.keys()]).toEqual(['list', 'tuple', 'again', 'd', 'set']);
    expect(v.get('list')).toEqual([1, 2, 3]);
    expect(v.get('again')).toBe(v.get('list'));
    expect(v.get('tuple')).toEqual([1, 2]);
    expect(Object.isFrozen(v.get('tuple'))).toBe(true);
    expect(v.get('d')).toEqual(new Map([['k', null]]));
    expect(v.get('set')).toEqual(new Set([5, 6]));
  });

  it('OrderedDict via GLOBAL and STACK_GLOBAL; BUILD with _metadata is ignored', () => {
    const w = new PickleWriter().proto(2).global('collections', 'OrderedDict').binput(0).emptyTuple().reduce().binput(1);
    w.mark().str('a').int(1).str('b').int(2).setitems();
    w.emptyDict().str('_metadata').binget(0).emptyTuple().reduce().mark().str('').emptyDict().setitems().setitem().build();
    const v = unpickle(w.stop().bytes());
    expect(v).toEqual(new Map([['a', 1], ['b', 2]]));

    const w2 = new PickleWriter().proto(4).stackGlobal('collections', 'OrderedDict').emptyTuple().newobj();
    w2.str('x').float(1.5).setitem();
    expect(unpickle(w2.stop().bytes())).toEqual(new Map([['x', 1.5]]));
  });

  it('argparse.Namespace becomes a plain object; numpy scalars become numbers', () => {
    const w = new PickleWriter().proto(2).emptyDict();
    w.str('args').global('argparse', 'Namespace').emptyTuple().newobj();
    w.emptyDict().str('lr').float(0.001).setitem().str('roi_x').int(96).setitem().build().setitem();
    // numpy.core.multiarray.scalar(numpy.dtype('f8', False, True), b'...') as numpy pickles it
    const f8 = new Uint8Array(new Float64Array([0.8125]).buffer);
    w.str('best_acc').global('numpy.core.multiarray', 'scalar');
    w.global('numpy', 'dtype').str('f8').bool(false).bool(true).tuple3().reduce();
    w.mark().int(3).str('<').none().none().none().int(-1).int(-1).int(0).tuple().build();
    w.shortBytes(f8).tuple2().reduce().setitem();
    const v = unpickle(w.stop().bytes()) as Map<string, unknown>;
    expect(v.get('args')).toEqual({ lr: 0.001, roi_x: 96 });
    expect(v.get('best_acc')).toBe(0.8125);
  });

  it('text opcodes of protocol 0 (INT, FLOAT, UNICODE, PUT/GET, DICT)', () => {
    const v = unpickle(enc('(dp0\nVkey\np1\nI42\nsVf\nF2.5\nsVk2\ng1\ns.'));
    expect(v).toEqual(new Map<unknown, unknown>([['key', 42], ['f', 2.5], ['k2', 'key']]));
  });
});

describe('unpickle: refusing code execution', () => {
  it('names os.system and never calls it', () => {
    // the classic payload: os.system('echo pwned'), built by hand
    const payload = new PickleWriter().proto(2).global('os', 'system').str('echo pwned').tuple1().reduce().stop().bytes();
    expect(() => unpickle(payload)).toThrow(ForbiddenGlobalError);
    expect(() => unpickle(payload)).toThrow(
      'refusing to load global os.system: it is not on the allow-list of data-only types (a pickle can run arbitrary code through globals like this one; voco never does)',
    );
  });

  it('refuses other dangerous globals however they are named', () => {
    const cases: Array<[PickleWriter, string]> = [
      [new PickleWriter().proto(4).stackGlobal('builtins', 'eval'), 'builtins.eval'],
      [new PickleWriter().proto(2).global('subprocess', 'Popen'), 'subprocess.Popen'],
      [new PickleWriter().proto(2).global('builtins', 'getattr'), 'builtins.getattr'],
      [new PickleWriter().proto(2).global('torch', 'load'), 'torch.load'],
      [new PickleWriter().proto(2).global('builtins', 'exec'), 'builtins.exec'],
      [new PickleWriter().proto(2).global('torch.nn.modules.conv', 'Conv3d'), 'torch.nn.modules.conv.Conv3d'],
      [new PickleWriter().proto(0).mark().str('ls').inst('os', 'system'), 'os.system'],
    ];
    for (const [w, name] of cases) {
      const err = (() => {
        try {
          unpickle(w.stop().bytes());
        } catch (e) {
          return e as ForbiddenGlobalError;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(ForbiddenGlobalError);
      expect(err!.message).toContain(`refusing to load global ${name}`);
    }
  });

  it('does not call a non-global through REDUCE', () => {
    const p = new PickleWriter().proto(2).str('os.system').str('x').tuple1().reduce().stop().bytes();
    expect(() => unpickle(p)).toThrow('cannot call a string');
  });
});

describe('unpickle: malformed input', () => {
  it('reports truncation, unknown opcodes and bad structure with byte positions', () => {
    expect(() => unpickle(new PickleWriter().proto(2).raw(0x58, 10, 0, 0, 0, 0x61).bytes())).toThrow(PickleError);
    expect(() => unpickle(new PickleWriter().proto(2).raw(0x58, 10, 0, 0, 0, 0x61).bytes())).toThrow('pickle byte 7: truncated: needs 10 more bytes, 1 left');
    expect(() => unpickle(Uint8Array.from([0x80, 0x02, 0xff]))).toThrow('pickle byte 2: unknown opcode 0xff');
    expect(() => unpickle(Uint8Array.from([0x80, 0x02, 0x4b]))).toThrow('truncated');
    expect(() => unpickle(new PickleWriter().proto(2).int(1).int(2).stop().bytes())).toThrow('STOP with 2 items on the stack');
    expect(() => unpickle(new PickleWriter().proto(2).binget(3).stop().bytes())).toThrow('memo key 3 not found');
    expect(() => unpickle(new PickleWriter().proto(2).int(1).tuple().stop().bytes())).toThrow('MARK expected');
    expect(() => unpickle(Uint8Array.from([0x80, 0x06]))).toThrow('unsupported pickle protocol 6');
    expect(() => unpickle(new PickleWriter().proto(2).str('x').binpersid().stop().bytes())).toThrow('no persistent_load');
    expect(() => unpickle(new PickleWriter().proto(2).emptyTuple().int(1).append().stop().bytes())).toThrow('APPEND(S) on a sequence of 0');
  });
});
