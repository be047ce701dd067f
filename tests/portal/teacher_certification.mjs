// A teacher's certification: the queue by course and class, preview of an image and a PDF and playback of audio
// and video fetched from the store with the token, certify, return with a reason, bulk certify.
import {scenario, signIn, shot, step, check, apiCall, tokenOf, FIXTURE} from './lib.mjs';

const {teacher, password} = FIXTURE;
const {outcomes} = teacher;

async function stateOf(id) {
  const token = await tokenOf({school: teacher.school, username: teacher.username, password});
  return apiCall(`/api/v1/certification/outcomes/${id}`, {token});
}

/** The preview's element shows the file's exact bytes, fetched with the token into a blob: URL. */
async function showsBytes(page, selector, size) {
  const element = page.locator(`#preview ${selector}`);
  await element.waitFor();
  // (the portal's CSP lets no script fetch blob: URLs, so the portal notes the size of what it received)
  const {src, length} = await element.evaluate(el => ({src: el.src, length: Number(el.dataset.bytes)}));
  check(src.startsWith('blob:'), `${selector} plays from a blob: URL (${src})`);
  check(length === size, `${selector} holds the file's ${size} bytes (got ${length})`);
}

await scenario('teacher_certification', async ({open}) => {
  // The substitute (代理人) of teacher01 sees teacher01's outcomes, marked as a substitute's.
  const substitute = await open({phone: true}); // the queue on a phone: rows become cards
  await signIn(substitute, FIXTURE.substitute);
  await substitute.getByRole('heading', {name: '課程學習成果認證'}).waitFor();
  const theirs = substitute.locator('tbody tr', {hasText: '藝術生活'});
  await theirs.filter({hasText: '測試學生14'}).waitFor();
  check(await theirs.count() === 4 && await theirs.locator('.badge.substitute').count() === 4,
        'four outcomes of teacher01, each marked 代理');
  await shot(substitute, 'teacher-00-substitute-queue');
  await substitute.getByRole('link', {name: '代理人'}).click();
  await substitute.getByRole('cell', {name: '陳代理老師'}).waitFor();
  step("substitute sees the absent teacher's queue");

  const page = await open();
  await signIn(page, {school: teacher.school, username: teacher.username, password});
  await page.getByRole('heading', {name: '課程學習成果認證'}).waitFor();

  // By course, then by class.
  const filtered = page.waitForResponse(r => r.url().includes(`section_id=${teacher.section_id}`));
  await page.locator('#filter-section').selectOption(teacher.section_id);
  await filtered;
  await page.locator('#filter-section').and(page.locator(':has(option:checked[value="' + teacher.section_id + '"])')).waitFor();
  await page.locator('#filter-class').selectOption('101');
  const rows = page.locator('tbody tr');
  await rows.filter({hasText: '測試學生14'}).waitFor();
  check(await rows.count() === 4, `four outcomes of the course are waiting (saw ${await rows.count()})`);
  check(await page.locator('#filter-section').inputValue() === teacher.section_id, 'the course filter holds');
  await shot(page, 'teacher-01-queue');
  step('queue by course and class');

  // Preview an image and a PDF, then certify.
  await rows.filter({hasText: '測試學生11'}).getByRole('link', {name: '審閱'}).click();
  await page.getByRole('heading', {name: /藝術生活/}).waitFor();
  const detail = await stateOf(outcomes.cert01);
  const image = detail.files.find(f => f.name === '作品照片.png');
  const document = detail.files.find(f => f.name === '作品說明.pdf');
  await page.locator('li', {hasText: '作品照片.png'}).getByRole('button', {name: '預覽'}).click();
  const img = page.locator('#preview img');
  await img.waitFor();
  await page.waitForFunction(() => document.querySelector('#preview img')?.complete);
  check(await img.evaluate(el => el.naturalWidth) === 240, 'the image is decoded (240 px wide)');
  await showsBytes(page, 'img', image.size);
  await shot(page, 'teacher-02-preview-image');
  await page.locator('li', {hasText: '作品說明.pdf'}).getByRole('button', {name: '預覽'}).click();
  await showsBytes(page, 'iframe', document.size);
  await shot(page, 'teacher-03-preview-pdf');
  step('image and pdf previewed');
  await page.getByRole('button', {name: '認證通過'}).click();
  await page.getByRole('heading', {name: '課程學習成果認證'}).waitFor();
  await page.locator('#status').getByText('已認證。').waitFor();
  check((await stateOf(outcomes.cert01)).state === 'certified', 'the server holds the certification');
  step('certified');

  // Audio and video, then return with a reason.
  await rows.filter({hasText: '測試學生12'}).getByRole('link', {name: '審閱'}).click();
  await page.getByRole('heading', {name: /藝術生活/}).waitFor();
  const media = await stateOf(outcomes.cert02);
  await page.locator('li', {hasText: '朗讀.mp3'}).getByRole('button', {name: '播放'}).click();
  await showsBytes(page, 'audio', media.files.find(f => f.name === '朗讀.mp3').size);
  check(await page.locator('#preview audio').evaluate(el => el.controls), 'the audio has its controls');
  await page.locator('li', {hasText: '短片.mp4'}).getByRole('button', {name: '播放'}).click();
  await showsBytes(page, 'video', media.files.find(f => f.name === '短片.mp4').size);
  step('audio and video play');
  const reason = '影片沒有聲音，請重新錄製。';
  await page.getByLabel('退回原因').fill(reason);
  await shot(page, 'teacher-04-return');
  await page.getByRole('button', {name: '退回', exact: true}).click();
  await page.locator('#status').getByText('已退回給學生。').waitFor();
  const returned = await stateOf(outcomes.cert02);
  check(returned.state === 'returned' && returned.reason === reason, 'the server holds the return and its reason');
  step('returned with a reason');

  // Bulk: the two left.
  await rows.filter({hasText: '測試學生14'}).waitFor();
  check(await rows.count() === 2, `two are left (saw ${await rows.count()})`);
  await page.locator('#select-all').check();
  await page.getByRole('button', {name: '認證所選（2）'}).click();
  await page.locator('#status').getByText('已認證 2 件，略過 0 件。').waitFor();
  for (const key of ['cert03', 'cert04']) check((await stateOf(outcomes[key])).state === 'certified', `${key} certified`);
  await page.getByRole('button', {name: '已認證'}).click();
  await rows.filter({hasText: '測試學生13'}).waitFor();
  check(await rows.count() === 3, `three certified in the course (saw ${await rows.count()})`);
  await shot(page, 'teacher-05-certified');
  step('bulk certified');

  // The homeroom teacher of 101 downloads the class's portfolios.
  const downloading = page.waitForEvent('download', {timeout: 90_000}); // a PDF per student is made first
  await page.getByRole('button', {name: '下載 101 班學習歷程（zip）'}).click();
  const download = await downloading;
  const zip = await (await import('node:fs/promises')).readFile(await download.path());
  check(download.suggestedFilename() === 'portfolios-999001-101.zip' && zip.subarray(0, 2).toString() === 'PK',
        `the class's portfolios arrive as a zip (${download.suggestedFilename()})`);
  step('class portfolios downloaded');

  await page.getByRole('link', {name: '代理人'}).click();
  await page.getByRole('heading', {name: '代理人'}).waitFor();
  await shot(page, 'teacher-06-substitutes');
});
